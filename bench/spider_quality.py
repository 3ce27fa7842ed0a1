"""Quality of SQL written by SmolLM2 under the SQL grammar: locally constrained decoding vs AWRS-SMC.

Run from the repository root (all three methods: about 110 s per question, 90 minutes for 50,
on a shared two-core machine)::

    python bench/spider_quality.py                      # 50 Spider dev questions, 128 tokens
    python bench/spider_quality.py --n 5 --max-tokens 64   # a smoke run
    python bench/spider_quality.py --json out.json
    python bench/spider_quality.py --methods "LCD greedy" --json greedy.json   # one method
    python bench/spider_quality.py --rescore out.json greedy.json   # score saved outputs again

SmolLM2-135M-Instruct (``structgen.load_default_model``, float32, CPU) answers Spider dev
questions with the database schema in the prompt (CREATE TABLE statements rendered from Spider's
``tables.json``), every output constrained by structgen's built-in ``sql`` grammar. Three ways
of decoding, on the same prompts:

* ``LCD greedy``: locally constrained greedy decoding, the most likely allowed token each step
  (full mask);
* ``LCD sample``: locally constrained sampling at temperature 1 (full mask, renormalized; one
  particle of ``SMC(proposal="mask", proper_weights=False)``): the model's distribution made
  myopically valid;
* ``AWRS-SMC``: ``SMC(proposal="awrs")`` with 5 particles at temperature 1 (ESS threshold 0.5,
  multinomial resampling); the answer is the posterior's most probable string (the MAP string).
  This targets the model's distribution conditioned on the whole output being valid SQL
  (Lipkin et al., 2025, arXiv:2504.05410).

Questions: a fixed sample (``random.Random(seed)``, seed 0) of ``--n`` dev questions among the
databases whose shipped DDL (``../shared/data/sql/spider/ddl``) builds in SQLite *with rows*: the
DDL files there hold CREATE TABLE and INSERT statements (small tables, 10-170 rows per
database). Databases whose DDL has no rows (car_1, flight_2, wta_1: their data files were too big
to ship) are left out, so gold results are meaningful.

Scores: *executes* -- SQLite (Python's ``sqlite3``) runs the output without error on a fresh
copy of the database built from the DDL (5 s limit per query; a copy, because the grammar allows
CREATE, INSERT or DROP and the model writes them); *query runs* -- it runs and returns a result
set (a CREATE TABLE or BEGIN that runs is not an answer); *matches gold* -- the rows equal the
gold query's rows on that database (as a multiset; in order when the gold query has ORDER BY;
floats rounded to 6 places). The output's first complete statement is what runs (the grammar
lets comments follow a final ``;``, and the model often writes some). With one small database
per question a wrong query can return the right rows by chance (Spider's test-suite evaluation
uses several database variants to catch that; they are not shipped here), so *matches gold* is
an upper bound on execution accuracy. Also reported for SMC: the posterior-weighted shares (the
expected score of a string drawn from the SMC posterior).

The Spider helpers at the top (questions, schema text, databases, scoring) import nothing beyond
the standard library so that ``bench/sampling_real.py`` and ``bench/genlm_compare.py`` (which
runs in a separate environment without structgen) can share the prompts.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPIDER = REPO.parent / "shared" / "data" / "sql" / "spider"

SYSTEM_PROMPT = ("You are an expert in SQLite. Given a database schema and a question, write one "
                 "SQLite query that answers the question. Answer with the SQL query only.")


# --- Spider data (standard library only) -------------------------------------------------------
def load_dev(spider: Path = SPIDER) -> list[dict]:
    """Spider dev questions ``{index, db_id, question, query}`` in file order."""
    with (spider / "dev.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [dict(row, index=k) for k, row in enumerate(rows)]


def load_tables(spider: Path = SPIDER) -> dict[str, dict]:
    with (spider / "tables.json").open(encoding="utf-8") as fh:
        return {db["db_id"]: db for db in json.load(fh)}


def _quote(name: str) -> str:
    return name if name.replace("_", "").isalnum() and not name[0].isdigit() else (
        '"' + name.replace('"', '""') + '"')


def schema_text(db: dict) -> str:
    """CREATE TABLE statements (original names, types, primary and foreign keys) for a
    ``tables.json`` entry: what the prompt shows the model."""
    tables = db["table_names_original"]
    columns = db["column_names_original"]
    types = db["column_types"]
    primary = set()
    for key in db["primary_keys"]:
        primary.update(key if isinstance(key, list) else [key])
    foreign: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for src, dst in db["foreign_keys"]:
        foreign[columns[src][0]].append((src, dst))
    out = []
    for t, table in enumerate(tables):
        lines = []
        for c, (owner, name) in enumerate(columns):
            if owner == t:
                lines.append(f"  {_quote(name)} {types[c]}" + (" PRIMARY KEY" if c in primary else ""))
        for src, dst in foreign[t]:
            lines.append(f"  FOREIGN KEY ({_quote(columns[src][1])}) REFERENCES "
                         f"{_quote(tables[columns[dst][0]])}({_quote(columns[dst][1])})")
        out.append(f"CREATE TABLE {_quote(table)} (\n" + ",\n".join(lines) + "\n);")
    return "\n".join(out)


def sql_messages(question: str, db: dict) -> list[dict[str, str]]:
    """The chat messages for one question (system prompt, then schema and question)."""
    user = f"Database schema:\n{schema_text(db)}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _statements(text: str):
    buf = ""
    for line in text.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


def build_database(db_id: str, spider: Path = SPIDER) -> sqlite3.Connection | None:
    """An in-memory SQLite database from the shipped DDL of ``db_id`` (CREATE TABLE and
    INSERT statements; statements SQLite refuses are skipped), or None without DDL."""
    files = sorted((spider / "ddl").glob(f"{db_id}__*.sql"))
    if not files:
        return None
    con = sqlite3.connect(":memory:")
    con.text_factory = lambda b: b.decode("utf-8", errors="replace")
    for path in files:
        for statement in _statements(path.read_text(encoding="utf-8", errors="replace")):
            try:
                con.execute(statement)
            except sqlite3.Error:
                pass  # MySQL-isms in a few upstream files; the tables still come through
    con.commit()
    return con


def row_count(con: sqlite3.Connection) -> int:
    names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return sum(con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names)


def select_questions(n: int, seed: int = 0, spider: Path = SPIDER) -> list[dict]:
    """A fixed sample of ``n`` dev questions whose database builds from the DDL with rows, in
    dev-file order."""
    dev = load_dev(spider)
    eligible_dbs = set()
    for db_id in sorted({q["db_id"] for q in dev}):
        con = build_database(db_id, spider)
        if con is not None and row_count(con) > 0:
            eligible_dbs.add(db_id)
        if con is not None:
            con.close()
    eligible = [q for q in dev if q["db_id"] in eligible_dbs]
    picked = random.Random(seed).sample(eligible, min(n, len(eligible)))
    return sorted(picked, key=lambda q: q["index"])


def run_query(con: sqlite3.Connection, query: str, *, timeout_s: float = 5.0):
    """``(rows, None)`` or ``(None, error message)``; ``rows`` is None-free: a statement that
    returns no result set (CREATE, INSERT, BEGIN, ...) gives ``(None, None)``.

    It runs on a fresh copy of ``con``: model output may write (CREATE, INSERT, DROP), and
    nothing it does may reach the database the next query is scored on.
    """
    scratch = sqlite3.connect(":memory:")
    scratch.text_factory = con.text_factory
    con.backup(scratch)
    deadline = time.monotonic() + timeout_s
    scratch.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        cursor = scratch.execute(query)
        return (cursor.fetchall() if cursor.description is not None else None), None
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        scratch.close()


def _normal(row) -> tuple:
    return tuple(round(v, 6) if isinstance(v, float) else v for v in row)


def same_result(pred_rows, gold_rows, *, ordered: bool) -> bool:
    pred = [_normal(r) for r in pred_rows]
    gold = [_normal(r) for r in gold_rows]
    if ordered:
        return pred == gold
    return collections.Counter(pred) == collections.Counter(gold)


def first_statement(text: str) -> str:
    """The output up to the end of its first complete statement: the grammar lets comments and
    whitespace follow the final ``;``, and Python's sqlite3 runs one statement at a time."""
    for statement in _statements(text):
        if statement.strip(" \t\r\n;"):
            return statement
    return text


def score(con: sqlite3.Connection, text: str | None, gold: str) -> dict:
    """``{"executes", "query", "matches", "error"}`` for one output (its first statement)
    against the gold query: SQLite runs it without error; it is a query (returns a result set,
    where a CREATE or BEGIN that runs is not an answer); its rows are the gold query's."""
    if text is None or not text.strip():
        return {"executes": False, "query": False, "matches": False, "error": "no output"}
    rows, error = run_query(con, first_statement(text))
    if error is not None:
        return {"executes": False, "query": False, "matches": False, "error": error}
    if rows is None:
        return {"executes": True, "query": False, "matches": False, "error": None}
    gold_rows, gold_error = run_query(con, gold)
    if gold_rows is None:  # pragma: no cover - every selected gold query runs (checked)
        return {"executes": True, "query": True, "matches": False, "error": f"gold: {gold_error}"}
    ordered = "order by" in gold.lower()
    return {"executes": True, "query": True,
            "matches": same_result(rows, gold_rows, ordered=ordered), "error": None}


def score_records(records: list[dict]) -> None:
    """(Re)score every saved output in place: the outputs, and for SMC its posterior."""
    dbs: dict[str, sqlite3.Connection] = {}
    for rec in records:
        con = dbs.get(rec["db_id"]) or dbs.setdefault(rec["db_id"], build_database(rec["db_id"]))
        for method, out in rec["methods"].items():
            out.update(score(con, out["text"], rec["gold"]))
            if method == "AWRS-SMC":
                weighted = [(w, score(con, s, rec["gold"])) for s, w in out["posterior"].items()]
                out["posterior_executes"] = sum(w for w, s in weighted if s["executes"])
                out["posterior_query"] = sum(w for w, s in weighted if s["query"])
                out["posterior_matches"] = sum(w for w, s in weighted if s["matches"])


# --- decoding (structgen, torch) ---------------------------------------------------------------
def greedy(lm, compiled, max_tokens: int) -> dict:
    """Locally constrained greedy decoding: argmax over the allowed tokens, full mask a step."""
    import numpy as np

    from structgen import GrammarMatcher

    info = compiled.tokenizer_info
    eos = set(info.eos_token_ids)
    matcher = GrammarMatcher(compiled)
    tokens: list[int] = []
    finished = False
    for _ in range(max_tokens):
        row = lm.next_token_logprobs([tokens])[0]
        allowed = matcher.allowed_token_ids()
        if len(allowed) == 0:
            break
        t = int(allowed[int(np.argmax(row[allowed]))])
        matcher.accept_token(t)
        if t in eos:
            finished = True
            break
        tokens.append(t)
    text = info.decode_bytes(tokens).decode("utf-8", errors="replace")
    return {"text": text, "tokens": len(tokens) + int(finished), "finished": finished,
            "masks": len(tokens) + 1, "checks": 0, "fallbacks": 0}


def smc_answer(lm, compiled, *, proposal: str, proper_weights: bool, particles: int,
               max_tokens: int, seed: int) -> dict:
    from structgen.sampling import SMC

    result = SMC(lm, compiled, proposal=proposal, proper_weights=proper_weights).run(
        particles, max_tokens, seed=seed)
    if particles == 1:  # plain sampling: whatever was written, finished or not
        text = result.particles[0].text
        posterior = {text: 1.0} if result.particles[0].finished else {}
    else:
        text = result.map_string
        posterior = dict(result.posterior)
    stats = result.stats
    return {"text": text, "posterior": posterior, "tokens": stats.steps,
            "finished": any(p.finished for p in result.particles),
            "masks": result.matcher_masks, "checks": result.matcher_checks,
            "fallbacks": getattr(stats, "fallbacks", 0),
            "ess_min": min(result.ess_history) if result.ess_history else 0.0,
            "resamples": len(result.resampled_at),
            "log_ml": result.log_marginal_likelihood}


METHODS = ("LCD greedy", "LCD sample", "AWRS-SMC")


def evaluate(questions: list[dict], *, methods, particles: int, max_tokens: int, seed: int,
             threads: int, log=print) -> list[dict]:
    import torch

    from structgen import load_default_model
    from structgen.generate import grammar_compiler_for, tokenizer_info_for
    from structgen.sampling.hf import HFCausalLM

    torch.set_num_threads(threads)
    model, tokenizer = load_default_model()
    info = tokenizer_info_for(model, tokenizer)
    compiled = grammar_compiler_for(info).compile_builtin("sql")
    tables = load_tables()
    records = []
    for k, q in enumerate(questions):
        messages = sql_messages(q["question"], tables[q["db_id"]])
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # a small KV-cache LRU: every entry holds the whole prompt's keys and values (~18 MB)
        lm = HFCausalLM(model, tokenizer, prompt=prompt, cache_size=4 * particles)
        rec = {"index": q["index"], "db_id": q["db_id"], "question": q["question"],
               "gold": q["query"], "prompt_tokens": len(lm.prompt_ids), "methods": {}}
        for method in methods:
            t0 = time.perf_counter()
            if method == "LCD greedy":
                out = greedy(lm, compiled, max_tokens)
            elif method == "LCD sample":
                out = smc_answer(lm, compiled, proposal="mask", proper_weights=False,
                                 particles=1, max_tokens=max_tokens, seed=seed + q["index"])
            else:
                out = smc_answer(lm, compiled, proposal="awrs", proper_weights=True,
                                 particles=particles, max_tokens=max_tokens, seed=seed + q["index"])
            out["seconds"] = time.perf_counter() - t0
            rec["methods"][method] = out
        score_records([rec])
        records.append(rec)
        marks = "  ".join(f"{m}: {'E' if o['executes'] else '-'}{'M' if o['matches'] else '-'} "
                          f"{o['seconds']:.0f}s"
                          for m, o in rec["methods"].items())
        log(f"[{k + 1}/{len(questions)}] dev#{q['index']} {q['db_id']}: {marks}")
    return records


def summarize(records: list[dict], methods) -> list[dict]:
    rows = []
    n = len(records)
    for method in methods:
        outs = [r["methods"][method] for r in records]
        tokens = sum(o["tokens"] for o in outs)
        row = {
            "method": method, "questions": n,
            "executes": sum(o["executes"] for o in outs) / n,
            "query": sum(o["query"] for o in outs) / n,
            "matches_gold": sum(o["matches"] for o in outs) / n,
            "finished": sum(bool(o["finished"]) for o in outs) / n,
            "tokens_per_query": tokens / n,
            "seconds_per_query": sum(o["seconds"] for o in outs) / n,
            "checks_per_token": sum(o["checks"] for o in outs) / max(tokens, 1),
            "masks_per_token": sum(o["masks"] for o in outs) / max(tokens, 1),
            "fallback_rate": sum(o["fallbacks"] for o in outs) / max(tokens, 1),
        }
        if method == "AWRS-SMC":
            row["posterior_executes"] = sum(o["posterior_executes"] for o in outs) / n
            row["posterior_query"] = sum(o["posterior_query"] for o in outs) / n
            row["posterior_matches"] = sum(o["posterior_matches"] for o in outs) / n
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'method':<12} {'n':>3} {'executes':>9} {'query runs':>10} {'matches gold':>12} "
            f"{'finished':>9} "
            f"{'tokens/q':>9} {'s/query':>8} {'checks/tok':>10} {'masks/tok':>9} {'fallback':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:<12} {r['questions']:>3} {100 * r['executes']:>8.0f}% "
              f"{100 * r['query']:>9.0f}% {100 * r['matches_gold']:>11.0f}% "
              f"{100 * r['finished']:>8.0f}% "
              f"{r['tokens_per_query']:>9.1f} {r['seconds_per_query']:>8.2f} "
              f"{r['checks_per_token']:>10.2f} {r['masks_per_token']:>9.3f} "
              f"{100 * r['fallback_rate']:>7.1f}%")
    print("executes: SQLite runs the first statement without error (on a fresh copy of the "
          "database built from the DDL, with rows); query runs: it also returns a result set (a "
          "CREATE or BEGIN that runs is not an answer); matches gold: same rows as the gold query.")
    print("tokens/q: tokens generated per question (every particle's); checks/tok: single-token "
          "checks that reached the matcher; masks/tok: full masks; fallback: AWRS steps that "
          "fell back to a full mask.")
    for r in rows:
        if "posterior_executes" in r:
            print(f"{r['method']} posterior-weighted: executes {100 * r['posterior_executes']:.1f}%, "
                  f"query runs {100 * r['posterior_query']:.1f}%, "
                  f"matches gold {100 * r['posterior_matches']:.1f}%")


def rescore(paths: list[Path], out: Path | None) -> int:
    saved = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    records = {r["index"]: r for r in saved[0]["records"]}
    for other in saved[1:]:
        for r in other["records"]:
            records.setdefault(r["index"], dict(r, methods={}))["methods"].update(r["methods"])
    merged = [records[k] for k in sorted(records)]
    score_records(merged)
    methods = [m for m in METHODS if all(m in r["methods"] for r in merged)]
    print(f"# rescored {len(merged)} questions from {', '.join(str(p) for p in paths)}")
    rows = summarize(merged, methods)
    print_table(rows)
    if out:
        payload = dict(saved[0], rows=rows, records=merged)
        out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="questions (fixed sample)")
    ap.add_argument("--seed", type=int, default=0, help="question sample and sampling seed")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--particles", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of: {', '.join(METHODS)}")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--json", type=Path, default=None, help="also write every output here")
    ap.add_argument("--rescore", type=Path, nargs="+", default=None,
                    help="score the outputs saved by earlier --json runs again (their methods "
                         "merged by question) instead of generating")
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore, args.json)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {METHODS}")
    if str(REPO) not in sys.path:  # `python bench/...` puts bench/ on sys.path, not the root
        sys.path.insert(0, str(REPO))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    questions = select_questions(args.n, args.seed)
    dbs = sorted({q["db_id"] for q in questions})
    print(f"# SmolLM2-135M-Instruct, built-in sql grammar; {len(questions)} Spider dev questions "
          f"(seed {args.seed}) over {len(dbs)} databases; <= {args.max_tokens} tokens; "
          f"SMC {args.particles} particles; torch threads {args.threads}")
    t0 = time.perf_counter()
    records = evaluate(questions, methods=methods, particles=args.particles,
                       max_tokens=args.max_tokens, seed=args.seed, threads=args.threads)
    rows = summarize(records, methods)
    print()
    print_table(rows)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"questions": len(questions), "databases": dbs,
                                         "max_tokens": args.max_tokens,
                                         "particles": args.particles, "seed": args.seed,
                                         "rows": rows, "records": records}, indent=2),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
