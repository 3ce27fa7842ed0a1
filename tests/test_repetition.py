"""RPG (structgen.repetition) and the grammar events it reads (structgen.events).

A tabular LM built to loop -- it strongly prefers writing its last statement again -- never
reaches EOS under greedy decoding with the grammar mask alone, and does with RPG, with every
output still accepted by Lark. The detector finds exactly the planted repeats, and its tandem
search agrees with brute force.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from pathlib import Path

import lark
import numpy as np
import pytest
from conftest import DATA, require_data, require_tokenizer

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo
from structgen.errors import ConfigurationError
from structgen.repetition import GrammarRepetitionPenalty, default_units

GRAMMAR = r"""
start: stmt+
stmt: NAME "=" value ";" | "print" "(" value ")" ";" | "if" value "{" stmt* "}"
value: NAME | NUMBER | value "+" value
NAME: /[a-z]+/
NUMBER: /[0-9]+/
%ignore /[ \n]+/
"""
VOCAB = [b"x", b"y", b" = ", b"1", b"2", b";\n", b"print(", b")", b" + ", b"if ", b" {\n", b"}\n"]
EOS = len(VOCAB)


@pytest.fixture(scope="module")
def compiled():
    info = TokenizerInfo.from_byte_strings(VOCAB + [b"</s>"], eos_token_ids=[EOS])
    return GrammarCompiler(info).compile_grammar(GRAMMAR)


def lark_accepts(text: str) -> bool:
    try:
        lark.Lark(GRAMMAR, parser="lalr").parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


class LoopingLM:
    """Prefers, at each position of a statement, the token the previous statement had there;
    EOS gets 5% after a finished statement. The first statement is ``x = 1;``."""

    first = [0, 2, 3, 5]

    def __init__(self, eos_prob: float = 0.05) -> None:
        self.eos_prob = eos_prob

    def next_token_logprobs(self, contexts):
        out = np.empty((len(contexts), EOS + 1))
        for i, ctx in enumerate(contexts):
            ends = [j for j, t in enumerate(ctx) if t == 5]
            current = list(ctx[ends[-1] + 1:]) if ends else list(ctx)
            start = ends[-2] + 1 if len(ends) > 1 else 0
            previous = list(ctx[start:ends[-1] + 1]) if ends else self.first
            p = np.full(EOS + 1, 0.01)
            pos = len(current)
            want = previous[pos] if pos < len(previous) else 5
            p[want] = 0.85
            if not current and ends:
                p[EOS] = self.eos_prob
            out[i] = np.log(p / p.sum())
        return out


def greedy(compiled, lm, rpg=None, budget=160):
    matcher = GrammarMatcher(compiled)
    tracker = rpg.new_tracker() if rpg is not None else None
    ctx: list[int] = []
    for _ in range(budget):
        scores = lm.next_token_logprobs([tuple(ctx)])[0]
        allowed = matcher.allowed_token_ids()
        masked = np.full_like(scores, -np.inf)
        masked[allowed] = scores[allowed]
        if rpg is not None:
            rpg.penalize_row(tracker, masked)
        t = int(np.argmax(masked))
        assert matcher.accept_token(t)
        if t == EOS:
            return ctx, True
        ctx.append(t)
        if tracker is not None:
            tracker.feed(VOCAB[t])
    return ctx, False


def text_of(ids) -> str:
    return b"".join(VOCAB[t] for t in ids).decode()


def test_looping_model_never_ends_without_rpg(compiled):
    ids, ended = greedy(compiled, LoopingLM())
    assert not ended
    assert text_of(ids).startswith("x = 1;\nx = 1;\nx = 1;\n")


@pytest.mark.parametrize("penalty", [0.9, 0.8])
def test_rpg_makes_the_looping_model_end(compiled, penalty):
    rpg = GrammarRepetitionPenalty(compiled, penalty=penalty)
    ids, ended = greedy(compiled, LoopingLM(), rpg)
    assert ended
    text = text_of(ids)
    assert lark_accepts(text)
    copies = text.count("x = 1;")
    # EOS wins once count * log(penalty) < log(p_eos / p_repeat) = log(0.05 / 0.85)
    need = int(np.ceil(np.log(0.05 / 0.85) / np.log(penalty)))
    assert need <= copies <= need + 2, (copies, need)


def test_rpg_as_a_logits_processor_on_numpy_rows(compiled):
    """The Hugging Face protocol: (input_ids [rows, length], scores) per step; the prompt is
    whatever came before the first call."""
    rpg = GrammarRepetitionPenalty(compiled)
    lm = LoopingLM()
    prompt = [9, 0, 10]  # an arbitrary prompt; only the generated tokens are parsed
    seq = list(prompt)
    penalized = 0
    for _ in range(40):
        gen = seq[len(prompt):]
        scores = lm.next_token_logprobs([tuple(gen)])
        out = rpg(np.array([seq]), scores.copy())
        penalized += int(not np.array_equal(out, scores))
        seq.append(int(np.argmax(out[0][:EOS])))
    assert penalized > 0
    assert rpg.stats["checks"] > 0


def test_penalty_goes_to_the_tokens_that_continue_the_pattern(compiled):
    rpg = GrammarRepetitionPenalty(compiled, penalty=0.5)
    tracker = rpg.new_tracker()
    assert tracker.feed(b"x = 1;\nx = 2;\nx = y;\n")
    period, count = tracker.repeat()
    assert (period, count) == (1, 3)
    scores = np.zeros(EOS + 1)
    rpg.penalize_row(tracker, scores)
    log_pen = 3 * np.log(0.5)
    assert scores[0] == pytest.approx(log_pen)  # `x` begins another assignment
    assert scores[1] == pytest.approx(log_pen)  # so does `y`
    assert scores[6] == 0.0  # `print(` starts a statement of another shape
    assert scores[9] == 0.0  # so does `if`
    assert scores[EOS] == 0.0


def test_detector_finds_exactly_the_planted_repeats(compiled):
    rpg = GrammarRepetitionPenalty(compiled)
    rng = random.Random(0)
    shapes = {"a": "x = 1;", "p": "print(y);", "i": "if x { y = 2; }", "s": "y = x + 1;"}
    for _ in range(40):
        # a varied lead-in, then k copies of a pattern of p units (names and numbers vary)
        lead = [rng.choice("api") for _ in range(rng.randint(0, 3))]
        period = rng.randint(1, 2)
        pattern = rng.sample(sorted(shapes), period)
        k = rng.randint(2, 5)
        if lead and len(lead) >= period and lead[-period:] == pattern:
            lead = lead[:-period]
        while len(lead) >= period and lead[-period:] == pattern:
            lead.pop()
        units = lead + pattern * k
        tracker = rpg.new_tracker()
        assert tracker.feed(" ".join(shapes[u] for u in units).encode())
        got_period, got_count = tracker.repeat()
        assert got_count >= k
        assert got_count * got_period >= k * period


@pytest.mark.parametrize("seed", range(30))
def test_tandem_search_matches_brute_force(compiled, seed):
    rng = random.Random(seed)
    rpg = GrammarRepetitionPenalty(compiled, window=64)
    tracker = rpg.new_tracker()
    tracker.shapes = [rng.randint(0, 2) for _ in range(rng.randint(0, 14))]
    u = tracker.shapes
    best = 1
    for p in range(1, len(u) // 2 + 1):
        c = 1
        while (c + 1) * p <= len(u) and u[len(u) - (c + 1) * p:len(u) - c * p] == u[len(u) - p:]:
            c += 1
        # a partial copy before the c full ones does not count
        best = max(best, c)
    assert tracker.repeat()[1] == best


def test_no_repeat_in_varied_code(compiled):
    rpg = GrammarRepetitionPenalty(compiled)
    tracker = rpg.new_tracker()
    assert tracker.feed(b"x = 1; print(x); if y { x = 2; } y = x + 1; print(y + 1);")
    assert tracker.repeat()[1] == 1
    scores = np.zeros(EOS + 1)
    assert rpg.penalize_row(tracker, scores) == 0 and not scores.any()


def test_events_follow_rollback_and_fork(compiled):
    m = GrammarMatcher(compiled)
    ids = [0, 2, 3, 5, 6, 1, 7, 5]  # x = 1;\nprint(y);\n
    for t in ids:
        assert m.accept_token(t)
    events = m.grammar_events()
    stmts = [e for e in events if e.kind == "rule" and e.name == "stmt"]
    assert [(m.accepted_bytes[e.start:e.end].strip()) for e in stmts] == [b"x = 1;", b"print(y);"]
    assert stmts[1].first_token == 3 and stmts[1].last_token == 7
    f = m.fork()
    before = m.grammar_events()
    for t in [0, 2, 3, 5]:  # the fork's events do not leak into the original
        assert f.accept_token(t)
    assert len([e for e in f.grammar_events() if e.name == "stmt"]) == 3
    assert m.grammar_events() == before
    f.rollback(4)
    m.rollback(4)
    assert [e.name for e in m.grammar_events() if e.name == "stmt"] == ["stmt"]
    assert len([e for e in f.grammar_events() if e.name == "stmt"]) == 2
    assert m.accept_token(1)
    names = [e.name for e in m.grammar_events()]
    assert names.count("stmt") == 1 and "NAME" in names


def test_default_units_and_bad_options(compiled):
    assert default_units(compiled) == frozenset({"stmt"})
    with pytest.raises(ConfigurationError, match="penalty"):
        GrammarRepetitionPenalty(compiled, penalty=1.5)
    with pytest.raises(ConfigurationError, match="no such rules"):
        GrammarRepetitionPenalty(compiled, units=["statement"])


def test_critic_scores_repeats(compiled):
    rpg = GrammarRepetitionPenalty(compiled)
    critic = rpg.critic()
    loop = (0, 2, 3, 5) * 4
    varied = (0, 2, 3, 5, 6, 1, 7, 5)
    scores = critic([loop, varied], [False, False])
    assert scores[0] == pytest.approx(4 * np.log(0.9))
    assert scores[1] == 0.0


# --- the built-in Python grammar on real code ------------------------------------------------
SIMPLE = (ast.Import, ast.ImportFrom, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr,
          ast.Assert, ast.Global, ast.Delete)


def _tandem_count(seq: list) -> int:
    best = 1
    for p in range(1, len(seq) // 2 + 1):
        c = 1
        while (c + 1) * p <= len(seq) and \
                seq[len(seq) - (c + 1) * p:len(seq) - c * p] == seq[len(seq) - p:]:
            c += 1
        best = max(best, c)
    return best


def varied_windows(limit: int = 12, size: int = 5) -> list[tuple[str, type]]:
    """Runs of ``size`` consecutive top-level simple statements from the Python corpus whose
    statement kinds (ast node types) contain no repeat at any prefix: non-repetitive code."""
    root = Path(sysconfig.get_paths()["stdlib"])
    names = require_data(DATA / "python" / "stdlib-files.txt").read_text().split()
    out = []
    for name in names:
        path = root / name
        if not path.exists():
            continue
        src = path.read_text("utf-8")
        body = ast.parse(src).body
        for i in range(len(body) - size):
            window = body[i:i + size]
            kinds = [type(s) for s in window]
            if not all(isinstance(s, SIMPLE) for s in window):
                continue
            if any(_tandem_count(kinds[:j]) > 1 for j in range(2, size + 1)):
                continue
            out.append(("\n".join(ast.get_source_segment(src, s) for s in window) + "\n",
                        kinds[-1]))
            break
        if len(out) >= limit:
            break
    return out


@pytest.fixture(scope="module")
def python_rpg():
    info = require_tokenizer("gpt2")
    return GrammarRepetitionPenalty(GrammarCompiler(info).compile_builtin("python"))


def test_python_units_are_statements(python_rpg):
    assert "stmt" in python_rpg.units and "elif_clause" in python_rpg.units


def test_python_detector_on_real_code(python_rpg):
    """No repeat in varied corpus code; exactly ``k`` after ``k`` planted copies of a statement
    shape (with different names and values each time)."""
    windows = varied_windows()
    assert len(windows) >= 5
    for k, (code, last_kind) in enumerate(windows, start=3):
        tracker = python_rpg.new_tracker()
        assert tracker.feed(code.encode()), code
        # a statement is reduced when the next line starts: the fifth is still open
        assert len(tracker.shapes) == 4, code
        assert tracker.repeat()[1] == 1, code
        planted = (f"zz{i} = qq{i}({i}, 'v{i}')\n" for i in range(k)) if last_kind is not ast.Assign \
            else (f"print(zz{i}, {i})\n" for i in range(k))
        for line in planted:
            assert tracker.feed(line.encode())
        assert len(tracker.shapes) == 4 + k
        assert tracker.repeat() == (1, k - 1), code


def test_python_elif_chain_is_penalized_at_the_next_elif(python_rpg):
    tracker = python_rpg.new_tracker()
    code = "def f(x):\n    if x == 1:\n        return 'a'\n"
    code += "".join(f"    elif x == {i}:\n        return '{chr(96 + i)}'\n" for i in range(2, 6))
    assert tracker.feed(code.encode() + b"    ")
    assert tracker.repeat()[1] >= 3
    assert python_rpg.repeat_extended_by_text(tracker, b"elif") >= 4
    assert python_rpg.repeat_extended_by_text(tracker, b"el") >= 4  # may still become elif
    assert python_rpg.repeat_extended_by_text(tracker, b"else") == 0
    assert python_rpg.repeat_extended_by_text(tracker, b"pass") == 0  # another statement shape


# --- expression-level units: list elements, dict entries, call arguments ----------------------
def test_python_item_units_are_a_level_of_their_own(python_rpg):
    assert {"pn_item", "_arg_pos", "dict_item"} <= python_rpg.item_units
    assert python_rpg.new_tracker().levels[1].min_count == python_rpg.item_min_count == 4


@pytest.mark.parametrize("head, item, closer, period", [
    ("def table():\n    return [", "{i}", "]", 1),
    ("print(", "x{i}", ")", 1),
    ("COLORS = {{\n", "    'c{i}': {i},\n", "}", 1),
    ("COLORS = {{\n", "    'c{i}': ({i}, 0, {i}),\n", "}", 4),  # three tuple items, one entry
])
def test_planted_item_loop_is_detected_and_penalized(python_rpg, head, item, closer, period):
    """k same-shaped items in one display or call: level 1 counts exactly k copies, and the
    next item (or the separator that begins it) is penalized by penalty ** k; the closer is
    not."""
    sep = "" if item.endswith("\n") else ", "
    for k in (2, 4, 7):
        tracker = python_rpg.new_tracker()
        text = head.format() + sep.join(item.format(i=i) for i in range(1, k + 1))
        assert tracker.feed(text.encode()), text
        # an item is reduced when the next lexeme comes: without a separator after it, the
        # k-th is still open
        done = k if item.endswith(",\n") else k - 1
        assert tracker.repeat(1) == ((period, done) if done > 1 else (0, 1)), text
        assert tracker.repeat(0)[1] == 1  # one statement, not yet finished
        expected = k if k >= python_rpg.item_min_count else 0
        nxt = ", " if sep else item.format(i=k + 1).split(":")[0]  # the next key
        assert python_rpg.repeat_extended_by_text(tracker, nxt.encode()) == expected, (text, nxt)
        assert python_rpg.repeat_extended_by_text(tracker, closer.encode()) == 0


def test_item_penalty_moves_greedy_to_the_closer(python_rpg):
    """A row of scores that prefers ``,`` (another element) by less than the penalty: after
    enough elements the closing bracket wins."""
    info = python_rpg.compiled.tokenizer_info
    ids = {b: info.token_bytes.index(b) for b in (b",", b"]")}
    tracker = python_rpg.new_tracker()
    assert tracker.feed(b"xs = [" + b", ".join(b"%d" % i for i in range(1, 9)))
    scores = np.full(len(info.token_bytes), -10.0)
    scores[ids[b","]], scores[ids[b"]"]] = 0.5, 0.0
    count = python_rpg.penalize_row(tracker, scores)
    assert count == 8
    assert scores[ids[b","]] == pytest.approx(0.5 + 8 * np.log(0.9))
    assert scores[ids[b"]"]] == 0.0 and int(np.argmax(scores)) == ids[b"]"]


def test_items_of_different_statements_are_not_siblings(python_rpg):
    """``return 'a'`` in every branch of an elif chain: one item per statement, no item repeat
    (the statement level sees the chain)."""
    tracker = python_rpg.new_tracker()
    code = "def f(x):\n    if x == 1:\n        return 'a'\n"
    code += "".join(f"    elif x == {i}:\n        return 'b{i}'\n" for i in range(2, 9))
    assert tracker.feed(code.encode() + b"    ")
    assert tracker.repeat(1)[1] == 1
    assert tracker.repeat(0)[1] >= 6


def _longest_display(code: str) -> int:
    """The most elements (or arguments) of any display or call in ``code``."""
    sizes = [0]
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            sizes.append(len(node.elts))
        elif isinstance(node, ast.Dict):
            sizes.append(len(node.keys))
        elif isinstance(node, ast.Call):
            sizes.append(len(node.args) + len(node.keywords))
    return max(sizes)


def test_python_varied_code_shows_no_item_repeat(python_rpg):
    """The varied corpus windows whose displays and calls are short (fewer items than it takes
    to be penalized): no item-level repeat reaches the penalty after any line. Windows with a
    long display (``__all__ = [...]``) do repeat an element shape, and are found."""
    short, long = [], []
    for code, _ in varied_windows(limit=20):
        (short if _longest_display(code) < python_rpg.item_min_count else long).append(code)
    assert len(short) >= 5
    for code in short:
        tracker = python_rpg.new_tracker()
        for line in code.splitlines(keepends=True):
            assert tracker.feed(line.encode()), code
            assert tracker.repeat(1)[1] < python_rpg.item_min_count, (code, line)
    tracker = python_rpg.new_tracker()
    assert tracker.feed(b"__all__ = [\n" + b"".join(b"    'f%d',\n" % i for i in range(6)))
    assert tracker.repeat(1) == (1, 6)


# --- bench/rpg.py's metrics (the model run itself is a bench, not a test) ----------------------
@pytest.fixture(scope="module")
def rpg_bench():
    from conftest import load_bench

    return load_bench("rpg")


def test_bench_metrics(rpg_bench):
    assert len(rpg_bench.PROMPTS) == 50 and len(set(rpg_bench.PROMPTS)) == 50
    # def/return pairs repeat with period 2: lines 4, 5 and 6 end a pair equal to the one before
    code = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(3))
    assert rpg_bench.repetition_stats(code) == (3 / 6, 3)
    assert rpg_bench.repetition_stats("x = 1\nprint(x)\nimport os\n") == (0.0, 1)
    comments = "# Example 1:\n\n# Example 2:\n# Example 3:\nx = 1\n"
    assert rpg_bench.repetition_stats(comments) == (2 / 4, 3)
    assert rpg_bench.repetition_stats(comments, comments=False) == (0.0, 1)
    assert rpg_bench.item_run("xs = [1, 2, 3, a, 5") == 3  # cut answers count too
    assert rpg_bench.item_run("f(a, b)\nd = {1: 2, 3: 4, 5: g(6)}") == 2
    assert rpg_bench.parses("x = [1,\n 2]\n") and not rpg_bench.parses("x = [1,\n")
