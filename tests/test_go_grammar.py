"""The Go grammar (``grammars/go.lark``) against the Go 1.19 standard library and gofmt.

The grammar's language is what Lark accepts with Go's semicolon rule as a post-lexer
(``tests/go_oracle.py``); ``gofmt -e`` (go/parser) is the independent oracle of what Go is.

* **build** -- Lark's LALR analysis has no reduce/reduce conflict, and exactly the documented
  shift/reduce conflicts (each resolved as shift, as go/parser decides the same inputs); every
  terminal compiles to a byte DFA with ``structgen.regex_dfa``; the semicolon contract (the
  ``_NL`` terminal and the ``GO_SEMICOLON_AFTER`` names) holds;
* **snippets** -- small programs for each construct and for the semicolon rule, with the
  verdict gofmt gives (checked against gofmt too when it is installed), and the known
  differences listed in ``KNOWN_DIFFERENCES``;
* **corpus** -- a fixed sample of 500 stdlib files (paths without ``testdata/``): of those gofmt
  accepts, at least 98% parse;
* **mutations** -- random token deletions and duplications of sampled files: of the mutants
  gofmt rejects (at least 300 of them), the grammar rejects at least 99%, and it accepts at
  least 95% of those gofmt accepts.

By default the corpus test parses the first ``CORPUS_CHECKED`` files of the sample and the
mutation test makes ``MUTANTS`` mutants of the smaller sampled files, so the module runs in
well under a minute; ``STRUCTGEN_FULL_CORPUS=1`` checks all 500 files and 3000 mutants of any
size. The Go source and gofmt come from Debian's golang-1.19-src and golang-1.19-go packages
(``scripts/install.sh`` installs them); without them these tests skip, and fail under
``CI=true``.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from conftest import in_ci
from go_oracle import GO_GRAMMAR, GO_NEWLINE, GO_SEMICOLON_AFTER, GoSemicolons, go_parser
from go_oracle import lark_accepts as accepts
from lark.common import ParserConf
from lark.parsers.lalr_analysis import LALR_Analyzer

from structgen.regex_dfa import regex_to_dfa

GO_SOURCES = (Path("/usr/share/go-1.19/src"), Path("/usr/lib/go-1.19/src"))
GOFMT = Path("/usr/lib/go-1.19/bin/gofmt")

FULL = os.environ.get("STRUCTGEN_FULL_CORPUS", "").strip() == "1"
SAMPLE_SEED = 1219
SAMPLE_SIZE = 500
CORPUS_CHECKED = None if FULL else 150  # files of the sample parsed (None: all)
MIN_CORPUS_ACCEPT = 0.98
MUTANT_SEED = 4242
MUTANTS = 3000 if FULL else 400
MUTANT_MAX_BYTES = None if FULL else 20_000  # mutate only files this small (None: any)
MIN_GOFMT_REJECTED_MUTANTS = 300
MIN_MUTANT_REJECT = 0.99
MIN_VALID_MUTANT_ACCEPT = 0.95  # of the mutants gofmt accepts (deleted optional tokens, ...)

# Shift/reduce conflicts of the LALR table, (lookahead, rule) -> why shifting is right. Each
# is resolved as a shift, which is what go/parser does with the same input.
EXPECTED_SHIFT_REDUCE = {
    ("LPAR", "signature"): "func() (...): a parenthesized result, not a conversion",
    ("LSQB", "signature"): "func() []T: a result type, not an index",
    ("MUL", "signature"): "func() *T: a result type, not a multiplication",
    ("ARROW", "signature"): "func() <-chan T: a result type",
    ("DOT", "type_name"): "a type name before '.' is a package name (qualified type)",
    ("LSQB", "named_type"): "a type name before '[' takes type arguments",
}

# --- snippets ------------------------------------------------------------------------------------
def stmts(body: str) -> str:
    return "package p\n\nfunc _() {\n" + body + "\n}\n"


def decls(text: str) -> str:
    return "package p\n\n" + text + "\n"


# (source, gofmt's verdict). The grammar gives the same verdict except for KNOWN_DIFFERENCES.
SNIPPETS: list[tuple[str, bool]] = [
    # semicolons: a line break ends a statement only after the trigger tokens
    (stmts("x := 1 +\n\t2"), True),
    (stmts("x := 1\n\t+ 2"), True),  # two statements: x := 1 and +2
    (stmts("x := a.\n\tb"), True),
    (stmts("f(a,\n\tb)"), True),
    (stmts("f(a\n\t)"), False),
    (stmts("x := []int{\n\t1,\n\t2,\n}"), True),
    (stmts("x := []int{\n\t1,\n\t2\n}"), False),
    (stmts("if x {\n} else {\n}"), True),
    (stmts("if x {\n}\nelse {\n}"), False),
    (stmts("x := 1\nelse := 2"), False),
    (decls("func f()\n{\n}"), False),
    (stmts("for {\n\tbreak\n}"), True),
    (stmts("for {\n\tbreak; continue; return\n}"), True),
    (stmts("i++\ni--"), True),
    (stmts("x := y /* a comment */ + 1 // and another\nz := 2"), True),
    (stmts("x := `raw\nstring`\ny := '\\n'"), True),
    ("package p", True),
    ("package p; import \"fmt\"; func f() { fmt.Println() }", True),
    ("package p\nfunc f() {};;", False),
    # declarations
    (decls("import (\n\t\"fmt\"\n\tos2 \"os\"\n\t. \"strings\"\n\t_ \"embed\"\n)"), True),
    (decls("import ()"), True),
    (decls("const (\n\ta = iota\n\tb\n\tc int = 3\n)"), True),
    (decls("const (\n\ta = iota\n\tb int\n)"), False),
    (decls("const x int"), False),
    (decls("var x"), False),
    (decls("var (\n\ta int\n\tb, c = 1, 2\n\td []string = nil\n)"), True),
    (decls("type (\n\tA int\n\tB = A\n\tC[T any] []T\n)"), True),
    (decls("type A [N]int\ntype B [N * M]int\ntype C [pkg.N]int\ntype D []int"), True),
    (decls("type A[P *C] struct{}"), True),  # go/parser: an array of length P*C
    (decls("type A[P any, Q *C] struct{}"), True),
    (decls("type A[P ~int | ~string, Q interface{ M() }] struct{}"), True),
    (decls("type T[P any] = int"), True),  # go/parser takes it; the type checker does not
    # functions, parameters, generics
    (decls("func f(a, b int, c ...string) (x int, err error) { return }"), True),
    (decls("func f(int, string, ...error) (int, error)"), True),
    (decls("func f(a, int) {}"), True),  # two unnamed parameters of types a and int
    (decls("func f(a, b int, c) {}"), False),  # mixed named and unnamed
    (decls("func f(a int, string) {}"), False),
    (decls("func f(a, b,) {}"), True),
    (decls("func f(a []int, b [4]int, c T[int], d pkg.T[K, V]) {}"), True),
    (decls("func f(T[int], pkg.T, []int, *T, func(), chan int) {}"), True),
    (decls("func F[K comparable, V any](m map[K]V) []K { return nil }"), True),
    (decls("func F[T]() {}"), False),
    (decls("func (r *List[T]) Push(v T) {}"), True),
    (decls("func (List[T]) Len() int { return 0 }"), True),
    (decls("func (r T) M[P any]() {}"), False),
    (stmts("x := F[int](1)\ny := G[int, string]{}\nvar z List[[]int]"), True),
    # types
    (decls("type S struct {\n\ta, b int `json:\"a\"`\n\tT\n\t*pkg.U\n\tV[int]\n"
           "\tc [N]int\n\td []int \"tag\"\n\tpkg.W[K, V]\n}"), True),
    (decls("type S struct { (T); *[]int; (*pkg.T) `tag` }"), True),  # go/parser takes these
    (decls("type S struct { a int; ; }"), False),
    (decls("type I interface {\n\tM(x int) error\n\tfmt.Stringer\n\t~int | ~string\n"
           "\tcomparable\n}"), True),
    (decls("var c chan<- <-chan int\nvar d <-chan chan<- int\nvar e func(int) func() int"), True),
    (decls("var m map[string][]*T"), True),
    # expressions
    (stmts("x := 0x1p-2 + 1_000.5e3i + 0o17 + 017 + 0b1_0 + .5 + 1. + 0X_1F + 1e+9"), True),
    (stmts("x := 09"), False),
    (stmts("x := 09.5 + 09i"), True),
    (stmts("x := 'a' + '\\'' + '\\x00' + '\\u1234' + '\\377' + 'é'"), True),
    (stmts("x := '\\\"'"), False),
    (stmts("x := \"a\\\"b\\\\\" + \"\\u00e9\\U0001F600\""), True),
    (stmts("x := (*T)(nil)\ny := []byte(s)\nz := map[string]int(nil)\nw := <-chan int(nil)"),
     True),
    (stmts("x := struct{ a int }{1}\ny := [...]int{1, 2}\nz := map[K]V{k: {1}, {2}: v}"), True),
    (stmts("x := [...]int"), False),
    (stmts("x := T{}.f\ny := a.b.c{}\nz := a[1]{}"), True),
    (stmts("x := (T){}"), False),
    (stmts("x := f(){}"), False),
    (stmts("x := a[1:2:3]\ny := a[:]\nz := a[1:]"), True),
    (stmts("x := a[1::3]"), False),
    (stmts("x := a[:2:]"), False),
    (stmts("f(a, b...)\nf(a...,)\ng(make([]int, n), new(struct{}))"), True),
    (stmts("x := func(a int) int { return a }(1)"), True),
    (stmts("x := &T{} == nil && !b || <-ch != 0 &^ 1 << 2"), True),
    (stmts("x := a && && b"), False),
    (stmts("x := a &^ &^ b"), False),
    (stmts("x = && b"), False),
    (stmts("x := a + ++b"), False),
    # statements
    (stmts("if x := f(); x > 0 {\n} else if y {\n} else {\n}"), True),
    (stmts("if x == T{} {\n}"), False),  # if x == T {}, then a block without ";" before it
    (stmts("if x == T{}\n{\n}"), True),  # the same with a line break: two statements
    (stmts("if x == (T{}) {\n}"), True),
    (stmts("if x == T{1, 2} {\n}"), False),
    (stmts("if x := T{}; x.ok {\n}"), False),
    (stmts("for _, x := range []int{1} {\n}"), True),
    (stmts("for i := 0; i < n; i++ {\n}\nfor ;; {\n}\nfor range ch {\n}\nfor x {\n}"), True),
    (stmts("for k, v = range m {\n}"), True),
    (stmts("for i := 0; i < 10 {\n}"), False),
    (stmts("switch {\n}\nswitch x := f(); x {\ncase 1, 2:\n\tfallthrough\ndefault:\n}"), True),
    (stmts("switch y := x.(type) {\ncase nil, *T, []int, map[K]V, func(), chan int:\n}"), True),
    (stmts("switch x := 1; {\n}"), True),
    (stmts("switch x := 5 {\n}"), False),
    (stmts("switch x = y.(type) {\n}"), False),
    (stmts("select {\ncase v, ok := <-ch:\ncase ch <- 1:\ncase <-done:\ndefault:\n}"), True),
    (stmts("select {\ncase a, b, c := <-ch:\n}"), False),
    (stmts("go f(x)\ndefer func() {\n}()\ngo (f)()"), True),
    (stmts("go f"), False),
    (stmts("defer (f())"), False),
    (stmts("L:\n\tfor {\n\t\tcontinue L\n\t}\n\tgoto L\nM:"), True),
    (stmts("goto"), True),  # go/parser takes a goto without a label
    (stmts("goto\nM:"), False),  # no semicolon after goto: "goto M :"
    (stmts("x, y = y, x\na[i] += 1\np.x++\nch <- v\nx <<= 1\nx &^= y"), True),
    (stmts("var a, b = 1, 2\nconst c = 3\ntype d int"), True),
    (stmts("{\n\t{\n\t}\n}\n;;"), True),
    # keywords are reserved even where only a name could stand
    (stmts("return return"), False),
    (stmts("for {\n\tbreak break\n}"), False),
    (stmts("for for {\n}"), False),
    (decls("var var x = 1"), False),
    (decls("import import \"fmt\""), False),
    (stmts("switch {\ncase case *T:\n}"), False),
    (stmts("x := format + returned + forward + var_"), True),
    (stmts("x := f(&&y)"), False),
    (stmts("x := f(if)"), False),
    (stmts("x := a.if"), False),
    (decls("var x = && y"), False),
    (stmts("x := 1\n++y"), False),
    (stmts("x := 1\n&&y"), False),
]

# Snippets where the grammar's verdict is the opposite of gofmt's, by design or limitation (see
# the header of go.lark), with the reason.
KNOWN_DIFFERENCES = {
    stmts("x := []int"): "a type where a value is needed: go/parser rejects it",
    stmts("a.b := 1"): "':=' takes any expression list here; go/parser wants names",
    stmts("f() := 1"): "':=' takes any expression list here; go/parser wants names",
    stmts("for a, b, c := range x {\n}"): "range takes any expression list (go: at most 2)",
    decls("type A[P *C,] struct{}"): "a type declaration's first constraint starting with '*'",
    decls("type A[P []E] struct{}"): "a type declaration's first constraint starting with '['",
    stmts("switch {\ncase 1:\nL:\ncase 2:\n}"): "a label without a statement before 'case'",
}
SNIPPETS += [(stmts("x := []int"), False), (stmts("a.b := 1"), False),
             (stmts("f() := 1"), False), (stmts("for a, b, c := range x {\n}"), False),
             (decls("type A[P *C,] struct{}"), True), (decls("type A[P []E] struct{}"), True),
             (stmts("switch {\ncase 1:\nL:\ncase 2:\n}"), False)]


# --- Go's sources and gofmt ------------------------------------------------------------------------
def _missing(reason: str):
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def go_src() -> Path:
    """The Go 1.19 standard library's source directory (and gofmt beside it)."""
    root = next((p for p in GO_SOURCES if (p / "fmt" / "print.go").is_file()), None)
    if root is None or not GOFMT.is_file():
        _missing("the Go 1.19 source or gofmt is missing "
                 "(apt-get install golang-1.19-src golang-1.19-go; see scripts/install.sh)")
    return root


def gofmt_rejects(paths: list[Path]) -> set[Path]:
    """The files among ``paths`` that ``gofmt -e`` rejects (one gofmt run for all)."""
    if not paths:
        return set()
    result = subprocess.run([str(GOFMT), "-e", "-l", *map(str, paths)], capture_output=True,
                            text=True, check=False)
    by_name = {str(p): p for p in paths}
    bad = set()
    for line in result.stderr.splitlines():  # "path:line:col: message", maybe continued
        name = line.split(":", 1)[0]
        if name in by_name:
            bad.add(by_name[name])
    if result.returncode != 0 and not bad:
        raise AssertionError(f"gofmt failed: {result.stderr[:500]}")
    return bad


def sample_files(root: Path) -> list[str]:
    """The fixed sample: SAMPLE_SIZE paths (relative to ``root``) from the sorted list of the
    stdlib's .go files outside testdata/ directories."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.go"))
    files = [f for f in files if "testdata/" not in f]
    return random.Random(SAMPLE_SEED).sample(files, SAMPLE_SIZE)


@pytest.fixture(scope="module")
def sample(go_src) -> list[str]:
    return sample_files(go_src)


# A lexer for choosing mutation points, independent of the grammar: Go's tokens, roughly.
_GO_LEXEME = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<token>`[^`]*` | "(?:[^"\\\n]|\\.)*" | '(?:[^'\\\n]|\\.)*'
      | \.?[0-9](?:[0-9a-zA-Z_.]|[eEpP][+-])*
      | [^\W\d]\w*
      | \.\.\. | &\^= | <<= | >>= | &\^ | <- | << | >> | \+\+ | -- | && | \|\| | [-+*/%&|^=!<>:]=
      | [-+*/%&|^<>=!~(){}\[\],;.:])
""", re.X | re.S)


def token_spans(src: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    while pos < len(src):
        m = _GO_LEXEME.match(src, pos)
        if m is None:
            raise ValueError(f"cannot split {src[pos:pos + 20]!r} into Go tokens")
        if m.lastgroup == "token":
            spans.append(m.span())
        pos = m.end()
    return spans


def mutants(root: Path, files: list[str], n: int, max_bytes: int | None,
            seed: int = MUTANT_SEED) -> list[tuple[str, str, str, str]]:
    """``n`` mutants ``(file, operation, token, text)``: one token of a random file deleted
    (replaced by a space) or duplicated (a space and a copy inserted after it)."""
    pool = [f for f in files if max_bytes is None or (root / f).stat().st_size <= max_bytes]
    rng = random.Random(seed)
    cache: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    out = []
    while len(out) < n:
        name = rng.choice(pool)
        if name not in cache:
            src = (root / name).read_text("utf-8")
            cache[name] = (src, token_spans(src))
        src, spans = cache[name]
        a, b = spans[rng.randrange(len(spans))]
        op = rng.choice(("delete", "duplicate"))
        text = (src[:a] + " " + src[b:] if op == "delete"
                else src[:b] + " " + src[a:b] + src[b:])
        out.append((name, op, src[a:b], text))
    return out


# --- build -----------------------------------------------------------------------------------------
def lalr_conflicts(parser) -> tuple[set[tuple[str, str]], list[str]]:
    """(shift/reduce conflicts as (lookahead, rule name), reduce/reduce conflicts)."""
    analyzer = LALR_Analyzer(ParserConf(parser.rules, {}, parser.options.start),
                             debug=False, strict=False)
    analyzer.compute_lr0_states()
    analyzer.compute_reads_relations()
    analyzer.compute_includes_lookback()
    analyzer.compute_lookaheads()
    shift_reduce, reduce_reduce = set(), []
    for state in analyzer.lr0_itemsets:
        shifted = {sym.name for sym in state.transitions}
        for la, rules in state.lookaheads.items():
            if len(rules) > 1:
                reduce_reduce.append(f"{la.name}: {sorted(map(str, rules))}")
            if la.name in shifted:
                shift_reduce |= {(la.name, rule.origin.name) for rule in rules}
    return shift_reduce, reduce_reduce


def test_lalr_conflicts_are_the_documented_shifts():
    shift_reduce, reduce_reduce = lalr_conflicts(go_parser())
    assert reduce_reduce == []
    assert shift_reduce == set(EXPECTED_SHIFT_REDUCE)


def test_terminals_compile_to_byte_dfas():
    for terminal in go_parser().terminals:
        dfa = regex_to_dfa(terminal.pattern.to_regexp())
        assert dfa.n_states > 0, terminal.name


def test_semicolon_contract():
    parser = go_parser()
    names = {t.name: t for t in parser.terminals}
    newline = re.compile(names[GO_NEWLINE].pattern.to_regexp())  # /\r?\n/, escapes evaluated
    assert [bool(newline.fullmatch(s)) for s in ("\n", "\r\n", "\r", "\n\n", " \n")] == [
        True, True, False, False, False]
    assert GoSemicolons.always_accept == (GO_NEWLINE,)
    assert set(GO_SEMICOLON_AFTER) <= set(names)
    literal = {n: t.pattern.value for n, t in names.items() if t.pattern.type == "str"}
    assert {n: literal[n] for n in GO_SEMICOLON_AFTER if n in literal} == {
        "BREAK": "break", "CONTINUE": "continue", "FALLTHROUGH": "fallthrough",
        "RETURN": "return", "INC": "++", "DEC": "--", "RPAREN": ")", "RBRACK": "]",
        "RBRACE": "}"}
    regex_triggers = {n for n in GO_SEMICOLON_AFTER if n not in literal}
    assert regex_triggers == {"IDENT", "INT", "FLOAT", "IMAG", "RUNE", "STRING", "RAW_STRING"}
    # no other terminal is a name or a literal: a keyword's text is never an IDENT, and every
    # regex terminal that is not a trigger is ignored or the line break itself
    ignored = set(parser.lexer_conf.ignore)
    assert {n for n, t in names.items() if t.pattern.type == "re"} == (
        regex_triggers | ignored | {GO_NEWLINE})
    assert GO_GRAMMAR.is_file()


@pytest.mark.parametrize("src, gofmt_ok", SNIPPETS, ids=lambda v: v if isinstance(v, bool)
                         else " ".join(v.split("\n", 3)[-1].split())[:50])
def test_snippet(src, gofmt_ok):
    expected = (not gofmt_ok) if src in KNOWN_DIFFERENCES else gofmt_ok
    assert accepts(src) == expected


def test_snippet_verdicts_are_gofmts(go_src, tmp_path):
    paths = []
    for k, (src, _) in enumerate(SNIPPETS):
        paths.append(tmp_path / f"s{k:03d}.go")
        paths[-1].write_text(src, "utf-8")
    rejected = gofmt_rejects(paths)
    wrong = [src for (src, ok), path in zip(SNIPPETS, paths, strict=True) if (path not in rejected) != ok]
    assert wrong == []


# --- corpus and mutations ----------------------------------------------------------------------------
def test_stdlib_sample_parses(go_src, sample):
    checked = sample if CORPUS_CHECKED is None else sample[:CORPUS_CHECKED]
    rejected_by_gofmt = gofmt_rejects([go_src / f for f in checked])
    valid = [f for f in checked if go_src / f not in rejected_by_gofmt]
    failures = [f for f in valid if not accepts((go_src / f).read_text("utf-8"))]
    rate = 1 - len(failures) / len(valid)
    print(f"go corpus: {len(valid) - len(failures)}/{len(valid)} accepted "
          f"({len(checked)} of the {len(sample)}-file sample checked)")
    assert len(valid) >= 0.9 * len(checked)
    assert rate >= MIN_CORPUS_ACCEPT, failures


def test_block_comments_never_end_a_statement_in_sample(go_src, sample):
    """Go's scanner reads a /* */ comment that spans a line break as a line break; the grammar
    ignores it. That differs only when the comment follows a semicolon trigger and code goes on
    after it on the same line, which no sampled file has."""
    trigger = re.compile(r"[^\W\d]\w*|\.?[0-9].*|['\"`].*|\+\+|--|[)\]}]", re.S)
    not_triggers = {"case", "chan", "const", "default", "defer", "else", "for", "func", "go",
                    "goto", "if", "import", "interface", "map", "package", "range", "select",
                    "struct", "switch", "type", "var"}
    found = []
    for name in sample:
        src = (go_src / name).read_text("utf-8")
        previous, pos = None, 0
        while pos < len(src):
            m = _GO_LEXEME.match(src, pos)
            text = m.group()
            if m.lastgroup == "comment" and text.startswith("/*") and "\n" in text:
                rest = src[m.end():].split("\n", 1)[0].strip()
                if (previous and trigger.fullmatch(previous) and previous not in not_triggers
                        and rest and not rest.startswith("//")):
                    found.append(f"{name}: {text[:30]!r}")
            if m.lastgroup == "token":
                previous = text
            pos = m.end()
    assert found == []


def test_mutants_gofmt_rejects_are_rejected(go_src, sample, tmp_path):
    made = mutants(go_src, sample, MUTANTS, MUTANT_MAX_BYTES)
    paths = []
    for k, (_, _, _, text) in enumerate(made):
        paths.append(tmp_path / f"m{k:05d}.go")
        paths[-1].write_text(text, "utf-8")
    rejected_by_gofmt = gofmt_rejects(paths)
    invalid = [m for m, p in zip(made, paths, strict=True) if p in rejected_by_gofmt]
    valid = [m for m, p in zip(made, paths, strict=True) if p not in rejected_by_gofmt]
    slipped = [f"{name}: {op} {token!r}" for name, op, token, text in invalid if accepts(text)]
    refused = [f"{name}: {op} {token!r}" for name, op, token, text in valid if not accepts(text)]
    print(f"go mutants: gofmt rejects {len(invalid)}/{len(made)}; the grammar rejects "
          f"{len(invalid) - len(slipped)}/{len(invalid)} of those and accepts "
          f"{len(valid) - len(refused)}/{len(valid)} of the others")
    assert len(invalid) >= MIN_GOFMT_REJECTED_MUTANTS
    assert 1 - len(slipped) / len(invalid) >= MIN_MUTANT_REJECT, slipped
    assert 1 - len(refused) / max(len(valid), 1) >= MIN_VALID_MUTANT_ACCEPT, refused
