# The native mask engine: the reference engine's thread semantics (structgen/reference.py) on
# C arrays, walking the sorted vocabulary trie with the GIL released.
#
# A parser stack lives in an arena of (state, parent) nodes; a walk pushes nodes as lexemes end
# and drops them by resetting the arena top when the depth-first walk backs up, so trying a
# token costs no copies. For the mask cache, a walk can start from a *partial* stack whose only
# known state is the top one: the node below it is UNKNOWN_STATE, and a reduction that needs it
# makes the outcome "uncertain" (decided later on the real stack).

from libc.stdlib cimport malloc, realloc, free, calloc
from libc.stdint cimport int8_t, uint8_t, INT32_MAX
from cython.parallel cimport prange
cimport openmp

cdef enum:
    MAX_THREADS = 16
    MAX_SHADOWS = 4
    UNKNOWN = -2           # feed() result: the stack below the known part decides
    UNKNOWN_STATE = -2     # state of the sentinel node under a partial stack
    ANY_NODE = -5          # thread past an unknown reduction: lexing only, any terminal
    MEMO_MIN_TOKENS = 1024  # walks this long memoize thread viability
    SUMMARY_BUILD_MIN = 4096  # walks of a subset this long build the summaries they lack


include "summary.pxi"


cdef struct Thread:
    int32_t node
    int32_t q
    int32_t nsh
    int32_t sh[MAX_SHADOWS]


cdef struct TSet:
    int32_t n
    int32_t unk
    int32_t overflow
    int32_t col              # indentation column after the last line break (PythonIndenter)
    Thread t[MAX_THREADS]


# feed()'s results per terminal, for the last stack shape (see Slots) it was fed on: how many
# nodes the reductions popped below the top, and the states then pushed. A walk feeds one
# terminal on many equal stacks (every "name," token reduces the same NAME node's chain), and
# replaying the pushes skips the reductions.
cdef enum:
    FEED_MAX_PUSH = 4


cdef struct FeedMemo:
    int32_t* below           # as in Slots: the node below the top, or the top itself
    int32_t* birth
    int32_t* state           # the top's state, or SLOT_SELF
    int32_t* result          # a node index >= 0 stands for "pushed these", else -1 / UNKNOWN
    int32_t* pops
    int32_t* n_push
    int32_t* pushed          # FEED_MAX_PUSH states per terminal


cdef struct Arena:
    int32_t* state
    int32_t* parent
    int32_t* aux             # the column of an _INDENT node (PythonIndenter), else 0
    int32_t* birth           # when the node was pushed (slots are reused as a walk backs up)
    int32_t clock
    int32_t size
    int32_t cap
    int32_t failed
    FeedMemo* feeds          # feed() results kept by stack shape, or NULL


# One answer per key about one stack. A stack is told by its top node's state and the node
# below it (that node's birth telling it from a later node in the same arena slot): tokens
# under different trie prefixes that end a lexeme the same way push equal tops on the same
# node ("name," and "count," both push NAME's state on the node below), and their answers are
# one. A top node with no node below, or with an indentation column, is told by itself.
cdef struct Slots:
    int32_t* node
    int32_t* birth
    int32_t* state           # the top node's state, or SLOT_SELF when ``node`` is the top
    int8_t* value


# What a walk remembers: the viability of (stack, lexer state) pairs, and the outcome of
# feeding a terminal on a stack (lexer states that differ only in which keyword prefix they
# are in share these). Tokens under one trie prefix end on the same few stacks, so most
# lookups hit.
cdef struct Memo:
    Slots states
    Slots terms
    FeedMemo feeds


cdef enum:
    SLOT_SELF = -2147483647


cdef int slots_init(Slots* s, int32_t n) noexcept nogil:
    s.node = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    s.birth = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    s.state = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    s.value = <int8_t*>malloc(max(n, 1) * sizeof(int8_t))
    if s.node == NULL or s.birth == NULL or s.state == NULL or s.value == NULL:
        return -1
    memset(s.node, 0xFF, max(n, 1) * sizeof(int32_t))  # -1: no node
    return 0


cdef void slots_free(Slots* s) noexcept nogil:
    free(s.node)
    free(s.birth)
    free(s.state)
    free(s.value)
    s.node = s.birth = s.state = NULL
    s.value = NULL


cdef inline int slots_get(const Slots* s, int32_t key, const Arena* a,
                          int32_t node) noexcept nogil:
    """The answer kept for ``key`` about the stack topped by ``node``, or -3 when there is
    none."""
    cdef int32_t below = a.parent[node], top = a.state[node]
    if below < 0 or a.aux[node] != 0:
        below = node
        top = SLOT_SELF
    if s.node[key] == below and s.birth[key] == a.birth[below] and s.state[key] == top:
        return s.value[key]
    return -3


cdef inline void slots_put(Slots* s, int32_t key, const Arena* a, int32_t node,
                           int value) noexcept nogil:
    cdef int32_t below = a.parent[node], top = a.state[node]
    if below < 0 or a.aux[node] != 0:
        below = node
        top = SLOT_SELF
    s.node[key] = below
    s.birth[key] = a.birth[below]
    s.state[key] = top
    s.value[key] = <int8_t>value


cdef struct Tables:
    const int32_t* action
    int32_t action_cols
    const int32_t* goto_
    int32_t goto_cols
    const int32_t* rule_lhs
    const int32_t* rule_len
    const int32_t* lex_trans
    const int32_t* lex_winner
    const int32_t* alive_ptr
    const int32_t* alive_terms
    const uint8_t* alive_ignored
    const uint8_t* final_only
    const int32_t* ctx_start
    const uint8_t* ignored
    const uint8_t* tok_data
    const int64_t* tok_off
    const int64_t* tok_ids
    int32_t n_lex_states
    int32_t end_term
    int32_t end_state
    int32_t any_start      # start of the all-terminals lexer (context expansion), or -1
    # PythonIndenter, read off the parser stack (ind_newline < 0: no indenter): a state's
    # bracket_delta is +1/-1 when it was entered by shifting an opening/closing bracket, and
    # indent_state is 1 for states entered by shifting _INDENT (their nodes hold the column)
    # and 2 for _DEDENT (a shifted _DEDENT closes the nearest level below until its block
    # is reduced)
    int32_t ind_newline
    int32_t ind_indent
    int32_t ind_dedent
    int32_t tab_len
    int32_t final_newline  # a post-lexer grammar: the text is read as followed by a line break
    const int8_t* bracket_delta
    const uint8_t* indent_state
    # subtree summaries (summary.pxi) for walks of the whole vocabulary in trie order
    SummaryCache* summaries    # NULL: none
    const int32_t* full_seq    # that order (a walk of another sequence uses no summary)
    const int32_t* full_lcp


cdef int arena_init(Arena* a, int32_t cap) noexcept nogil:
    a.state = <int32_t*>malloc(cap * sizeof(int32_t))
    a.parent = <int32_t*>malloc(cap * sizeof(int32_t))
    a.aux = <int32_t*>malloc(cap * sizeof(int32_t))
    a.birth = <int32_t*>malloc(cap * sizeof(int32_t))
    a.clock = 0
    a.size = 0
    a.cap = cap
    a.failed = 0
    a.feeds = NULL
    return 0 if (a.state != NULL and a.parent != NULL and a.aux != NULL
                 and a.birth != NULL) else -1


cdef void arena_free(Arena* a) noexcept nogil:
    free(a.state)
    free(a.parent)
    free(a.aux)
    free(a.birth)
    a.state = NULL
    a.parent = NULL
    a.aux = NULL
    a.birth = NULL


cdef inline int32_t arena_push(Arena* a, int32_t state, int32_t parent) noexcept nogil:
    cdef int32_t* s
    cdef int32_t* p
    if a.size == a.cap:
        s = <int32_t*>realloc(a.state, 2 * a.cap * sizeof(int32_t))
        if s == NULL:
            a.failed = 1
            return -1
        a.state = s
        p = <int32_t*>realloc(a.parent, 2 * a.cap * sizeof(int32_t))
        if p == NULL:
            a.failed = 1
            return -1
        a.parent = p
        p = <int32_t*>realloc(a.aux, 2 * a.cap * sizeof(int32_t))
        if p == NULL:
            a.failed = 1
            return -1
        a.aux = p
        p = <int32_t*>realloc(a.birth, 2 * a.cap * sizeof(int32_t))
        if p == NULL:
            a.failed = 1
            return -1
        a.birth = p
        a.cap *= 2
    a.state[a.size] = state
    a.parent[a.size] = parent
    a.aux[a.size] = 0
    a.clock += 1
    a.birth[a.size] = a.clock
    a.size += 1
    return a.size - 1


cdef int feed_memo_init(FeedMemo* m, int32_t n_terms) noexcept nogil:
    cdef int32_t n = max(n_terms, 1)
    m.below = <int32_t*>malloc(n * sizeof(int32_t))
    m.birth = <int32_t*>malloc(n * sizeof(int32_t))
    m.state = <int32_t*>malloc(n * sizeof(int32_t))
    m.result = <int32_t*>malloc(n * sizeof(int32_t))
    m.pops = <int32_t*>malloc(n * sizeof(int32_t))
    m.n_push = <int32_t*>malloc(n * sizeof(int32_t))
    m.pushed = <int32_t*>malloc(n * FEED_MAX_PUSH * sizeof(int32_t))
    if m.below == NULL or m.birth == NULL or m.state == NULL or m.result == NULL \
            or m.pops == NULL or m.n_push == NULL or m.pushed == NULL:
        return -1
    memset(m.below, 0xFF, n * sizeof(int32_t))  # -1: nothing kept
    return 0


cdef void feed_memo_free(FeedMemo* m) noexcept nogil:
    free(m.below)
    free(m.birth)
    free(m.state)
    free(m.result)
    free(m.pops)
    free(m.n_push)
    free(m.pushed)
    m.below = m.birth = m.state = m.result = m.pops = m.n_push = m.pushed = NULL


cdef int32_t feed(const Tables* g, Arena* a, int32_t node, int32_t term) noexcept nogil:
    """Shift ``term`` after the reductions it triggers: new top node, -1 rejected, UNKNOWN.
    With ``a.feeds``, a result found before on an equal stack is replayed."""
    cdef FeedMemo* m = a.feeds
    cdef int32_t below, top, r, j, n, top0, pops, below_n
    if m == NULL:
        return feed_reduce(g, a, node, term)
    below = a.parent[node]
    top = a.state[node]
    if below < 0 or a.aux[node] != 0:
        below = node
        top = SLOT_SELF
    if m.below[term] == below and m.birth[term] == a.birth[below] and m.state[term] == top:
        if m.result[term] < 0:
            return m.result[term]
        n = node
        for j in range(m.pops[term]):
            n = a.parent[n]
        for j in range(m.n_push[term]):
            n = arena_push(a, m.pushed[term * FEED_MAX_PUSH + j], n)
            if n < 0:
                return -1
        return n
    top0 = a.size
    r = feed_reduce(g, a, node, term)
    if a.failed:
        return r
    # what it did: the new nodes (indices >= top0) on r's chain, over an old node of ours
    n = r
    j = 0
    while n >= top0:
        if j == FEED_MAX_PUSH:
            return r  # too many to keep
        j += 1
        n = a.parent[n]
    pops = 0
    if r >= 0:
        below_n = node
        while below_n != n:
            below_n = a.parent[below_n]
            pops += 1
            if below_n < 0:
                return r
        m.n_push[term] = j
        n = r
        while j > 0:
            j -= 1
            m.pushed[term * FEED_MAX_PUSH + j] = a.state[n]
            n = a.parent[n]
    m.result[term] = r if r < 0 else 0
    m.pops[term] = pops
    m.below[term] = below
    m.birth[term] = a.birth[below]
    m.state[term] = top
    return r


cdef int32_t feed_reduce(const Tables* g, Arena* a, int32_t node, int32_t term) noexcept nogil:
    """``feed`` by the parse tables."""
    cdef int32_t st, act, r, k, nxt
    while True:
        st = a.state[node]
        if st < 0:
            return UNKNOWN
        act = g.action[st * g.action_cols + term]
        if act > 0:
            return arena_push(a, act - 1, node)
        if act == 0:
            return -1
        r = -act - 1
        for k in range(g.rule_len[r]):
            node = a.parent[node]
            if node < 0:
                return UNKNOWN
        st = a.state[node]
        if st < 0:
            return UNKNOWN
        nxt = g.goto_[st * g.goto_cols + g.rule_lhs[r]]
        if nxt < 0:
            return -1
        node = arena_push(a, nxt, node)
        if node < 0:
            return -1


cdef int32_t complete(const Tables* g, Arena* a, int32_t node, int32_t term,
                      int32_t col) noexcept nogil:
    """End a lexeme of ``term`` (ReferenceEngine.complete): skip it if ignored, else feed it,
    through the PythonIndenter for the newline terminal. New top node, -1, or UNKNOWN.

    On a partial stack the line break is still decided when the known part settles it: an
    open bracket there (what lies below can only add open brackets) makes it whitespace, and
    an open indentation level there bounds the brackets (none is ever open below a level)
    and gives the level to compare the new line's column with."""
    cdef int32_t n, st, depth = 0, level = 0, k = 0, pending = 0, kind, indent_node = -1
    if g.ignored[term]:
        return node
    if term != g.ind_newline:
        return feed(g, a, node, term)
    # bracket depth down to the innermost open indentation level (or the bottom)
    n = node
    while n >= 0:
        st = a.state[n]
        if st < 0:
            return node if depth > 0 else UNKNOWN
        depth += g.bracket_delta[st]
        kind = g.indent_state[st]
        if kind == 2:
            pending += 1
        elif kind == 1:
            if pending == 0:
                indent_node = n
                break
            pending -= 1
        n = a.parent[n]
    if depth > 0:
        return node  # inside brackets a line break is whitespace
    n = indent_node
    if n >= 0:
        level = a.aux[n]
    node = feed(g, a, node, term)
    if node < 0:
        return node
    if col > level:
        node = feed(g, a, node, g.ind_indent)
        if node >= 0:
            a.aux[node] = col
        return node
    # dedent: one _DEDENT per open level deeper than col, which must then be a level
    while col < level:
        k += 1
        n = open_indent(g, a, a.parent[n])
        if n == UNKNOWN:
            return UNKNOWN
        level = a.aux[n] if n >= 0 else 0
    if col != level:
        return -1
    while k > 0 and node >= 0:
        node = feed(g, a, node, g.ind_dedent)
        k -= 1
    return node


cdef int32_t open_indent(const Tables* g, Arena* a, int32_t n) noexcept nogil:
    """The innermost node at or below ``n`` that holds an open indentation level, -1 if there
    is none, UNKNOWN if the unknown part of a partial stack would have to say."""
    cdef int32_t pending = 0, kind
    while n >= 0:
        if a.state[n] < 0:
            return UNKNOWN
        kind = g.indent_state[a.state[n]]
        if kind == 2:
            pending += 1
        elif kind == 1:
            if pending == 0:
                return n
            pending -= 1
        n = a.parent[n]
    return -1


cdef int32_t close_levels(const Tables* g, Arena* a, int32_t node) noexcept nogil:
    """Feed one _DEDENT per open indentation level (the end of the text)."""
    cdef int32_t n, k = 0
    if g.ind_newline < 0:
        return node
    n = open_indent(g, a, node)
    while n >= 0:
        k += 1
        n = open_indent(g, a, a.parent[n])
    if n == UNKNOWN:
        return UNKNOWN
    while k > 0 and node >= 0:
        node = feed(g, a, node, g.ind_dedent)
        k -= 1
    return node


cdef inline int32_t column_after(const Tables* g, int32_t col, uint8_t b) noexcept nogil:
    if g.ind_newline < 0:
        return 0
    if b == 10:
        return 0
    if b == 32:
        return col + 1
    if b == 9:
        return col + g.tab_len
    return col


cdef bint feed_end(const Tables* g, Arena* a, int32_t node) noexcept nogil:
    """Does end of input complete a sentence on this stack? (nodes pushed are scratch)"""
    cdef int32_t st, act, r, k, nxt
    while True:
        st = a.state[node]
        if st < 0:
            return False
        act = g.action[st * g.action_cols + g.end_term]
        if act >= 0:
            return False
        r = -act - 1
        for k in range(g.rule_len[r]):
            node = a.parent[node]
            if node < 0:
                return False
        st = a.state[node]
        if st < 0:
            return False
        nxt = g.goto_[st * g.goto_cols + g.rule_lhs[r]]
        if nxt < 0:
            return False
        node = arena_push(a, nxt, node)
        if node < 0:
            return False
        if nxt == g.end_state:
            return True


cdef bint tset_can_end(const Tables* g, Arena* a, const TSet* ts0) noexcept nogil:
    """Is the text a complete sentence under some thread? (With a PythonIndenter the text is
    read as followed by a line break, and open indentation levels are closed.)"""
    cdef int32_t k, w, n2, top = a.size
    cdef const Thread* th
    cdef bint ok
    cdef TSet nl
    cdef const TSet* ts = ts0
    if g.final_newline:
        tset_step(g, a, ts0, 10, &nl)
        if nl.overflow:
            a.size = top
            return False
        ts = &nl
    for k in range(ts.n):
        th = &ts.t[k]
        ok = False
        if th.node == ANY_NODE:
            continue
        if th.q < 0:
            n2 = close_levels(g, a, th.node)
            ok = n2 >= 0 and feed_end(g, a, n2)
        else:
            w = g.lex_winner[th.q]
            if w >= 0:
                n2 = complete(g, a, th.node, w, ts.col)
                if n2 >= 0:
                    n2 = close_levels(g, a, n2)
                ok = n2 >= 0 and feed_end(g, a, n2)
        if ok:
            a.size = top
            return True
    a.size = top
    return False


cdef inline void tset_add(TSet* dst, int32_t node, int32_t q, const int32_t* sh, int32_t nsh,
                          int32_t extra) noexcept nogil:
    cdef int32_t k, j, total = nsh + (1 if extra >= 0 else 0)
    cdef Thread* t
    for k in range(dst.n):
        t = &dst.t[k]
        if t.node == node and t.q == q and t.nsh == total:
            if total == 0:
                return
            if total == nsh:
                for j in range(nsh):
                    if t.sh[j] != sh[j]:
                        break
                else:
                    return
    if dst.n == MAX_THREADS or total > MAX_SHADOWS:
        dst.overflow = 1
        return
    t = &dst.t[dst.n]
    t.node = node
    t.q = q
    for j in range(nsh):
        t.sh[j] = sh[j]
    if extra >= 0:
        t.sh[nsh] = extra
    t.nsh = total
    dst.n += 1


cdef inline void tset_add_any(const Tables* g, TSet* dst, int32_t q) noexcept nogil:
    """Add a lexing-only thread; past the thread limit, fall back to "uncertain"."""
    cdef int32_t k
    if q < 0:
        return
    for k in range(dst.n):
        if dst.t[k].node == ANY_NODE and dst.t[k].q == q:
            return
    if dst.n == MAX_THREADS:
        dst.unk = 1
        return
    dst.t[dst.n].node = ANY_NODE
    dst.t[dst.n].q = q
    dst.t[dst.n].nsh = 0
    dst.n += 1


cdef void tset_step(const Tables* g, Arena* a, const TSet* src, uint8_t b, TSet* dst) noexcept nogil:
    """Step every thread by one byte (ReferenceEngine.step). Used on real stacks and, for the
    mask cache, on partial ones: a reduction that needs the unknown part of the stack turns
    the thread into a lexing-only one (context expansion): it can no longer be proven to
    accept, but if even lexing with every terminal fails, the token is certainly rejected."""
    cdef int32_t k, j, nsh, s2, r, q2, w, n2
    cdef int32_t sh[MAX_SHADOWS]
    cdef bint ok
    cdef const Thread* th
    dst.n = 0
    dst.unk = 0
    dst.overflow = 0
    dst.col = column_after(g, src.col, b)
    for k in range(src.n):
        th = &src.t[k]
        if th.node == ANY_NODE:
            # no longest-match obligations: any split into terminals, so this over-approximates
            # whatever the contextual lexer would do on the real stack
            tset_add_any(g, dst, g.lex_trans[th.q * 256 + b])
            if g.lex_winner[th.q] >= 0:
                tset_add_any(g, dst, g.lex_trans[g.any_start * 256 + b])
            continue
        nsh = 0
        ok = True
        for j in range(th.nsh):
            s2 = g.lex_trans[th.sh[j] * 256 + b]
            if s2 < 0:
                continue
            if g.lex_winner[s2] >= 0:
                ok = False
                break
            sh[nsh] = s2
            nsh += 1
        if not ok:
            continue
        if th.q < 0:
            r = g.lex_trans[g.ctx_start[a.state[th.node]] * 256 + b]
            if r >= 0:
                tset_add(dst, th.node, r, sh, nsh, -1)
            continue
        q2 = g.lex_trans[th.q * 256 + b]
        if q2 >= 0:
            tset_add(dst, th.node, q2, sh, nsh, -1)
        w = g.lex_winner[th.q]
        if w >= 0 and not (q2 >= 0 and g.lex_winner[q2] >= 0):
            n2 = complete(g, a, th.node, w, src.col)
            if n2 == UNKNOWN:
                if g.any_start >= 0:
                    tset_add_any(g, dst, g.lex_trans[g.any_start * 256 + b])
                else:
                    dst.unk = 1
            elif n2 >= 0:
                r = g.lex_trans[g.ctx_start[a.state[n2]] * 256 + b]
                if r >= 0:
                    tset_add(dst, n2, r, sh, nsh, q2)


cdef inline bint lexeme_step(const Tables* g, const TSet* src, uint8_t b,
                             TSet* dst) noexcept nogil:
    """tset_step's fast path: one thread, no shadow, in the middle of a lexeme that cannot end
    before ``b`` (it has no winner, or ``b`` extends a winner to another): only the lexer
    moves. False when the general step is needed. (Most of a walk inside strings, comments
    and names is this step.)"""
    cdef const Thread* th = &src.t[0]
    cdef int32_t q2
    if src.n != 1 or th.nsh != 0 or th.q < 0 or th.node == ANY_NODE:
        return False
    q2 = g.lex_trans[th.q * 256 + b]
    if g.lex_winner[th.q] >= 0 and not (q2 >= 0 and g.lex_winner[q2] >= 0):
        return False
    dst.unk = 0
    dst.overflow = 0
    dst.col = column_after(g, src.col, b)
    if q2 < 0:
        dst.n = 0
        return True
    dst.n = 1
    dst.t[0].node = th.node
    dst.t[0].q = q2
    dst.t[0].nsh = 0
    return True


cdef inline int32_t feed_outcome(const Tables* g, Arena* a, int32_t node, int32_t term,
                                 Memo* memo) noexcept nogil:
    """``feed``'s outcome for ``term`` on ``node`` (>= 0 taken, -1 rejected, UNKNOWN), the
    nodes it pushes dropped; memoized per terminal when ``memo`` is not NULL."""
    cdef int32_t r, top = a.size
    if memo != NULL:
        r = slots_get(&memo.terms, term, a, node)
        if r != -3:
            return r
    r = feed(g, a, node, term)
    a.size = top
    if r >= 0:
        r = 0
    if memo != NULL:
        slots_put(&memo.terms, term, a, node, r)
    return r


cdef int thread_viability(const Tables* g, Arena* a, const Thread* th,
                          Memo* memo=NULL) noexcept nogil:
    """1: its partial lexeme can end as a terminal the stack takes; 0: cannot; 2: unknown.
    (A partial newline lexeme may still end at any column: as whitespace inside brackets, or
    as a newline the parser takes.)"""
    cdef int32_t k, r, top = a.size
    cdef int res = 0
    if th.node == ANY_NODE:
        return 2
    if th.q < 0 or g.alive_ignored[th.q]:
        return 1
    for k in range(g.alive_ptr[th.q], g.alive_ptr[th.q + 1]):
        if g.alive_terms[k] == g.ind_newline:
            r = complete(g, a, th.node, g.ind_newline, 0)  # UNKNOWN on a partial stack
            if r >= 0 and r == th.node:
                a.size = top
                return 1  # inside brackets
            a.size = top
            if r == UNKNOWN:
                res = 2
                continue
        r = feed_outcome(g, a, th.node, g.alive_terms[k], memo)
        if r >= 0:
            return 1
        if r == UNKNOWN:
            res = 2
    return res


# What a walk found: indices (into the walked sequence) of the tokens accepted and of those
# uncertain, each uncertain one with its common prefix length with the one before.
cdef struct Split:
    int32_t* acc
    int32_t n_acc
    int32_t* unc
    int32_t* unc_lcp
    int32_t n_unc


cdef int split_init(Split* out, int32_t n) noexcept nogil:
    out.n_acc = 0
    out.n_unc = 0
    out.acc = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    out.unc = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    out.unc_lcp = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    return 0 if (out.acc != NULL and out.unc != NULL and out.unc_lcp != NULL) else -1


cdef void split_free(Split* out) noexcept nogil:
    free(out.acc)
    free(out.unc)
    free(out.unc_lcp)
    out.acc = out.unc = out.unc_lcp = NULL


cdef inline bint split_uncertain(Split* out, int32_t k, int32_t* run_min, int32_t max_uncertain,
                                 int* shared) noexcept nogil:
    """Add token ``k`` as uncertain, with ``run_min`` (the least lcp since the uncertain token
    before; reset here) as its prefix; True when that makes too many (``too_uncertain``)."""
    out.unc[out.n_unc] = k
    out.unc_lcp[out.n_unc] = run_min[0]
    out.n_unc += 1
    run_min[0] = INT32_MAX
    return too_uncertain(out.n_unc, max_uncertain, shared)


cdef extern from *:
    int __sync_add_and_fetch(int* ptr, int value) nogil


cdef inline bint too_uncertain(int32_t n_unc, int32_t max_uncertain,
                               int* shared) noexcept nogil:
    """Is a walk that just met its ``n_unc``-th uncertain token past ``max_uncertain``? With
    ``shared``, a walk cut into pieces counts them all: each piece adds its count every 32
    tokens (an undercount, so a piece stops only when the whole walk is surely past)."""
    if max_uncertain < 0:
        return False
    if shared == NULL:
        return n_unc > max_uncertain
    return n_unc % 32 == 0 and __sync_add_and_fetch(shared, 32) > max_uncertain


cdef void next_shorter_prefix(const int32_t* lcp, int32_t n, int32_t* out) noexcept nogil:
    """out[k]: the first k' > k with lcp[k'] < lcp[k] (n if none). Every token between k and
    out[k] shares at least lcp[k] bytes with token k - 1: the walk jumps over a dead prefix's
    tokens along this chain, one jump per child of the dead trie node."""
    cdef int32_t k, j
    cdef int32_t* stack = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    cdef int32_t top = 0
    if stack == NULL:
        for k in range(n):
            out[k] = k + 1  # no jumps: one token at a time
        return
    for k in range(n):
        while top > 0 and lcp[k] < lcp[stack[top - 1]]:
            top -= 1
            out[stack[top]] = k
        stack[top] = k
        top += 1
    for j in range(top):
        out[stack[j]] = n
    free(stack)


cdef inline int32_t lexer_tuple(const TSet* ts, int32_t* lex) noexcept nogil:
    """The lexer part of a thread set, as summary_get takes it: its length, or 0 when
    the set cannot be summarized (too many threads, or one not inside a lexeme)."""
    cdef int32_t i, k, pos = 1
    cdef const Thread* th
    if ts.n < 1 or ts.n > SUMMARY_MAX_THREADS:
        return 0
    lex[0] = ts.n
    for i in range(ts.n):
        th = &ts.t[i]
        if th.q < 0 or th.node < 0:
            return 0
        lex[pos] = th.q
        lex[pos + 1] = th.nsh
        for k in range(th.nsh):
            lex[pos + 2 + k] = th.sh[k]
        pos += 2 + th.nsh
    return pos


cdef inline int end_viability(const Tables* g, Arena* a, const Thread* th,
                              Memo* memo) noexcept nogil:
    """thread_viability of a thread a token ends on, through ``memo`` when there is one."""
    cdef int v
    if memo != NULL and th.q >= 0 and th.node >= 0:
        v = slots_get(&memo.states, th.q, a, th.node)
        if v == -3:
            v = thread_viability(g, a, th, memo)
            slots_put(&memo.states, th.q, a, th.node, v)
        return v
    return thread_viability(g, a, th)


cdef int walk(const Tables* g, Arena* a, const int32_t* seq, const int32_t* lcp,
              const int32_t* skip, int32_t n, TSet* sets, uint8_t* unk, int32_t* marks,
              Memo* memo, Split* out, int32_t max_uncertain,
              int32_t k0=0, int* shared_unc=NULL) noexcept nogil:
    """Depth-first walk of tokens ``seq[k0:n]`` (trie order; ``lcp`` relative to the previous
    one, read as 0 for the first).

    ``sets[0]`` holds the starting threads. The indices ``k`` of tokens ``seq[k]`` accepted
    and uncertain are appended to ``out`` (in increasing order; the rest are rejected), each
    uncertain one with its common prefix length with the uncertain one before. ``skip`` (or
    NULL) is ``next_shorter_prefix`` of ``lcp``: the tokens under a rejected prefix are then
    jumped over rather than visited. Returns -1 if a thread set overflowed (caller falls back
    to the reference engine) or memory ran out, -2 as soon as more than ``max_uncertain``
    tokens are uncertain (when that is not negative; with ``shared_unc``, counting those of
    the other pieces of one walk).

    The in-lexeme tokens below large trie nodes are settled from their subtree summaries
    (summary.pxi) instead of being stepped. A walk of the whole vocabulary, or of a subset of
    at least SUMMARY_BUILD_MIN tokens, builds the summaries it lacks; a shorter one (an
    entry's few uncertain tokens) only uses those already built.
    """
    cdef int8_t* group_viability = NULL  # per group of the summary in use: -1 not yet asked
    cdef int rc
    if g.summaries != NULL and g.summaries.n_nodes > 0:
        group_viability = <int8_t*>malloc(SUMMARY_MAX_GROUPS * sizeof(int8_t))
    rc = walk_trie(g, a, seq, lcp, skip, n, sets, unk, marks, memo, out, max_uncertain, k0,
                   shared_unc, group_viability,
                   seq == g.full_seq or n - k0 >= SUMMARY_BUILD_MIN)
    free(group_viability)
    return rc


cdef int walk_trie(const Tables* g, Arena* a, const int32_t* seq, const int32_t* lcp,
                   const int32_t* skip, int32_t n, TSet* sets, uint8_t* unk, int32_t* marks,
                   Memo* memo, Split* out, int32_t max_uncertain, int32_t k0,
                   int* shared_unc, int8_t* gv, bint may_build) noexcept nogil:
    """``walk``; ``gv`` (or NULL: no summaries) has room for a summary's groups;
    ``may_build``: build the summaries it lacks (summary_get)."""
    cdef int32_t k = k0, i, common, depth, L, valid = 0, j, c, nb, deepest, restart_node
    cdef int32_t run_min = 0  # least lcp since the last uncertain token (0 before the first)
    cdef int best, v
    cdef bint dead_uncertain = False  # is the dead prefix's fate the unknown stack's?
    cdef bint summarized, soft, soft_unk = False
    cdef bint reject_ok = True, soft_reject_ok = True  # (see where a summary is taken up)
    cdef bint in_order = seq == g.full_seq  # seq[k] == k
    cdef int32_t kk, last, n_acc
    cdef int32_t* acc
    cdef const int16_t* code = NULL  # the summary's codes, indexed by trie position
    cdef const uint8_t* tok
    cdef Thread* th
    cdef Thread ends
    cdef SummaryCache* sc = g.summaries
    # the summarized trie node being visited: trie positions [s_base, s_end) below it, at
    # s_depth (the walk visits those of them in ``seq``)
    cdef const Summary* summ = NULL
    cdef int32_t s_base = 0, s_end = -1, s_depth = 0, s_threads = 1, n_lex
    cdef int32_t s_nodes[SUMMARY_MAX_THREADS]
    cdef int32_t lex[SUMMARY_MAX_LEX]
    unk[0] = sets[0].unk
    marks[0] = a.size
    ends.nsh = 0
    while k < n:
        i = seq[k]
        common = lcp[k] if k != k0 else 0
        if common < run_min:
            run_min = common
        if i >= s_end:
            s_end = -1
        if i < s_end:
            if in_order:  # trie positions are indices: run through the settled tokens
                kk = k
                last = s_end if s_end < n else n
                acc = out.acc
                n_acc = out.n_acc
                while kk < last:
                    c = code[kk]
                    if c < 0:  # dead: rejected, unless the unknown stack could say
                        if not (reject_ok if c == SUMMARY_DEAD else
                                soft_reject_ok and c == SUMMARY_SOFT_DEAD):
                            break  # EXIT, or uncertain: the general case below
                    else:
                        v = gv[c & ~SUMMARY_SOFT]
                        if v == 1:
                            acc[n_acc] = kk
                            n_acc += 1
                        elif v != 0 or not (soft_reject_ok if c & SUMMARY_SOFT else reject_ok):
                            break  # not yet asked, or uncertain: the general case below
                    kk += 1
                out.n_acc = n_acc
                if kk > k:
                    for j in range(k + 1, kk):  # their prefixes, as the loop's top would
                        if lcp[j] < run_min:
                            run_min = lcp[j]
                    k = kk
                    continue
            c = code[i]
            if c >= 0:  # ends inside the lexeme, in group c's lexer state
                soft = (c & SUMMARY_SOFT) != 0
                c &= ~SUMMARY_SOFT
                v = gv[c]
                if v < 0:  # the best of its threads' viabilities
                    v = 0
                    for j in range(s_threads):
                        ends.q = summ.group_q[c * s_threads + j]
                        if ends.q < 0:
                            continue
                        ends.node = s_nodes[j]
                        best = end_viability(g, a, &ends, memo)
                        if best == 1:
                            v = 1
                            break
                        if best == 2:
                            v = 2
                    gv[c] = <int8_t>v
                if v == 1:
                    out.acc[out.n_acc] = k
                    out.n_acc += 1
                elif v == 2 or not (soft_reject_ok if soft else reject_ok):
                    if split_uncertain(out, k, &run_min, max_uncertain, shared_unc):
                        return -2
                k += 1
                continue
            if c == SUMMARY_DEAD or c == SUMMARY_SOFT_DEAD:
                if not (reject_ok if c == SUMMARY_DEAD else soft_reject_ok) \
                        and split_uncertain(out, k, &run_min, max_uncertain, shared_unc):
                    return -2
                k += 1
                continue
            common = s_depth  # SUMMARY_EXIT: stepped from the node
        elif common > valid:
            if not dead_uncertain:
                if skip != NULL:
                    while k < n and lcp[k] > valid:
                        if lcp[k] < run_min:
                            run_min = lcp[k]
                        k = skip[k]
                else:
                    k += 1
                continue
            if split_uncertain(out, k, &run_min, max_uncertain, shared_unc):
                return -2
            k += 1
            continue
        a.size = marks[common]
        tok = g.tok_data + g.tok_off[i]
        L = <int32_t>(g.tok_off[i + 1] - g.tok_off[i])
        depth = common
        summarized = False
        deepest = sc.deepest[i] if gv != NULL and s_end < 0 else -1  # its large nodes
        while depth < L:
            if not lexeme_step(g, &sets[depth], tok[depth], &sets[depth + 1]):
                tset_step(g, a, &sets[depth], tok[depth], &sets[depth + 1])
            if sets[depth + 1].overflow or a.failed:
                return -1
            unk[depth + 1] = unk[depth] | <uint8_t>sets[depth + 1].unk
            depth += 1
            marks[depth] = a.size
            if sets[depth].n == 0:
                break
            if deepest < 0 or sc.node_depth[deepest] < depth:
                continue
            nb = deepest
            while nb >= 0 and sc.node_depth[nb] > depth:
                nb = sc.node_parent[nb]
            if nb >= 0 and sc.node_depth[nb] == depth:
                n_lex = lexer_tuple(&sets[depth], lex)
                if n_lex > 0:
                    summ = summary_get(sc, g.lex_trans, g.lex_winner, g.tok_data, g.tok_off,
                                       g.full_lcp, nb, lex, n_lex, may_build)
                    restart_node = -1
                    th = &sets[depth].t[0]
                    if summ == NULL and n_lex == 3 and g.lex_winner[th.q] >= 0 \
                            and g.lex_winner[th.q] != g.ind_newline:
                        # the old lexeme ends at this node for most of its tokens: end it
                        # once and summarize the new lexemes (summary_build's restart)
                        restart_node = complete(g, a, th.node, g.lex_winner[th.q],
                                                sets[depth].col)
                        if restart_node >= 0:
                            lex[0] = SUMMARY_RESTART
                            lex[2] = g.ctx_start[a.state[restart_node]]
                            summ = summary_get(sc, g.lex_trans, g.lex_winner, g.tok_data,
                                               g.tok_off, g.full_lcp, nb, lex, n_lex,
                                               may_build)
                        if summ == NULL:
                            a.size = marks[depth]
                    if summ != NULL:
                        s_base = sc.node_start[nb]
                        s_end = sc.node_end[nb]
                        s_depth = depth
                        s_threads = sets[depth].n
                        for j in range(s_threads):
                            s_nodes[j] = sets[depth].t[j].node
                        if restart_node >= 0:  # kept on the arena while the node is visited
                            s_nodes[0] = restart_node
                            marks[depth] = a.size
                        memset(gv, 0xFF, summ.n_groups * sizeof(int8_t))
                        # a soft exit's lexeme ends on this node: does that need the unknown?
                        soft_unk = summ.soft_term >= 0 and complete(
                            g, a, s_nodes[summ.soft_thread], summ.soft_term,
                            sets[depth].col) == UNKNOWN
                        # may a token the summary settles as not viable be rejected, or
                        # could the unknown stack below still take it?
                        reject_ok = not unk[depth]
                        soft_reject_ok = reject_ok and not soft_unk
                        code = summ.code - s_base
                        a.size = marks[depth]
                        valid = depth
                        summarized = True
                        break
        if summarized:
            continue  # token k again, now from the summary
        if depth == L and sets[L].n > 0:
            valid = L
            best = 0
            for j in range(sets[L].n):
                v = end_viability(g, a, &sets[L].t[j], memo)
                if v == 1:
                    best = 1
                    break
                if v == 2:
                    best = 2
            if best == 1:
                out.acc[out.n_acc] = k
                out.n_acc += 1
            elif best == 2 or unk[L]:
                if split_uncertain(out, k, &run_min, max_uncertain, shared_unc):
                    return -2
            a.size = marks[L]
        else:
            valid = depth - 1
            dead_uncertain = unk[depth]
            if dead_uncertain:
                if split_uncertain(out, k, &run_min, max_uncertain, shared_unc):
                    return -2
        k += 1
    return 0


cdef struct Job:
    uint32_t* row                # output bitmask row
    int32_t width                # words in the row
    const int32_t* spec          # starting threads (see NativeEngine.fill_rows)
    const uint32_t* acc_bits     # accepted tokens as a bitmask row, or NULL
    int32_t acc_width            # words in acc_bits (the row may be wider)
    const int64_t* acc_ids       # ... and (or only) as sorted ids
    int32_t n_acc_ids
    const int32_t* seq           # trie positions to walk on the real stack
    const int32_t* lcp
    const int32_t* skip          # next_shorter_prefix of lcp, or NULL
    int32_t n_seq
    const int64_t* eos_ids
    int32_t n_eos
    int32_t rc                   # 0 ok, -1 fell back (overflow or out of memory)


cdef int load_threads(Arena* a, const int32_t* spec, TSet* ts, bint partial) noexcept nogil:
    """Build the starting thread set from ``spec``: [n_threads, then per thread: depth,
    (state, aux) bottom..top, q, n_shadows, shadows..., then the column]."""
    cdef int32_t n = spec[0], pos = 1, k, j, depth, node
    cdef Thread* th
    ts.n = 0
    ts.unk = 0
    ts.overflow = 0
    ts.col = 0
    if n > MAX_THREADS:
        return -1
    for k in range(n):
        depth = spec[pos]
        pos += 1
        node = -1
        if partial:
            node = arena_push(a, UNKNOWN_STATE, -1)
        for j in range(depth):
            node = arena_push(a, spec[pos + 2 * j], node)
            if node >= 0:
                a.aux[node] = spec[pos + 2 * j + 1]
        pos += 2 * depth
        th = &ts.t[k]
        th.node = node
        th.q = spec[pos]
        th.nsh = spec[pos + 1]
        pos += 2
        if th.nsh > MAX_SHADOWS:
            return -1
        for j in range(th.nsh):
            th.sh[j] = spec[pos + j]
        pos += th.nsh
        ts.n += 1
    ts.col = spec[pos]
    return -1 if a.failed else 0


# A walk's working memory, reused across the walks of one thread (precompute): the arena's
# birth clock keeps running, so memo slots from an earlier walk never match a node of this one
# and the memo is cleared only once.
cdef struct Scratch:
    Arena a
    TSet* sets
    uint8_t* unk
    int32_t* marks
    Memo memo
    bint memo_ready


# One OpenMP thread's scratch and split buffer in ``split_many``; the padding keeps the counters
# that two threads bump on every token (arena size and clock, split lengths) off a shared cache
# line (measured: the Python grammar's precompute took 32 s instead of 18 s without it).
cdef struct Worker:
    Scratch scratch
    Split buf
    char pad[128]


cdef int scratch_init(Scratch* s, int32_t max_len) noexcept nogil:
    s.sets = <TSet*>malloc((max_len + 2) * sizeof(TSet))
    s.unk = <uint8_t*>malloc((max_len + 2) * sizeof(uint8_t))
    s.marks = <int32_t*>malloc((max_len + 2) * sizeof(int32_t))
    s.memo.states.node = s.memo.states.birth = s.memo.terms.node = s.memo.terms.birth = NULL
    s.memo.states.state = s.memo.terms.state = NULL
    memset(&s.memo.feeds, 0, sizeof(FeedMemo))
    s.memo.states.value = s.memo.terms.value = NULL
    s.memo_ready = False
    if arena_init(&s.a, 1024) < 0 or s.sets == NULL or s.unk == NULL or s.marks == NULL:
        return -1
    return 0


cdef void scratch_free(Scratch* s) noexcept nogil:
    free(s.sets)
    free(s.unk)
    free(s.marks)
    slots_free(&s.memo.states)
    slots_free(&s.memo.terms)
    feed_memo_free(&s.memo.feeds)
    s.sets = NULL
    s.unk = NULL
    s.marks = NULL
    arena_free(&s.a)


cdef Memo* scratch_memo(const Tables* g, Scratch* s) noexcept nogil:
    """The scratch's viability memo, set up on first use (NULL if out of memory)."""
    if not s.memo_ready:
        if slots_init(&s.memo.states, g.n_lex_states) < 0 \
                or slots_init(&s.memo.terms, g.action_cols) < 0 \
                or feed_memo_init(&s.memo.feeds, g.action_cols) < 0:
            return NULL
        s.memo_ready = True
    return &s.memo


cdef int walk_positions(const Tables* g, const int32_t* spec, bint partial, int32_t max_len,
                        const int32_t* seq, const int32_t* lcp, const int32_t* skip, int32_t n,
                        Split* out, bint* can_end, int32_t max_uncertain=-1,
                        Scratch* scratch=NULL, int32_t k0=0,
                        int* shared_unc=NULL) noexcept nogil:
    """Load the threads and walk ``seq[k0:n]`` into ``out`` (buffers for ``n - k0`` tokens);
    optionally decide end of text. ``scratch`` (or NULL: one of its own) is the working
    memory."""
    cdef Scratch local
    cdef Scratch* s = scratch
    cdef Memo* memo = NULL
    cdef int rc = -1
    if s == NULL:
        if scratch_init(&local, max_len) < 0:
            scratch_free(&local)
            return -1
        s = &local
    s.a.size = 0
    s.a.failed = 0
    if n - k0 >= MEMO_MIN_TOKENS:  # a memo pays for its setup only on long walks
        memo = scratch_memo(g, s)
    if load_threads(&s.a, spec, &s.sets[0], partial) == 0:
        if can_end != NULL:
            can_end[0] = tset_can_end(g, &s.a, &s.sets[0])
        rc = 0
        if n > k0:
            s.a.feeds = &memo.feeds if memo != NULL else NULL
            rc = walk(g, &s.a, seq, lcp, skip, n, s.sets, s.unk, s.marks, memo, out,
                      max_uncertain, k0, shared_unc)
            s.a.feeds = NULL
    if s == &local:
        scratch_free(&local)
    return rc


cdef void run_job(const Tables* g, int32_t max_len, Job* job) noexcept nogil:
    cdef int32_t k
    cdef int64_t t
    cdef Split found
    cdef bint can_end = False
    if job.acc_bits != NULL:
        memcpy(job.row, job.acc_bits, job.acc_width * sizeof(uint32_t))
        if job.width > job.acc_width:
            memset(job.row + job.acc_width, 0, (job.width - job.acc_width) * sizeof(uint32_t))
    else:
        memset(job.row, 0, job.width * sizeof(uint32_t))
    for k in range(job.n_acc_ids):
        t = job.acc_ids[k]
        job.row[t >> 5] |= (<uint32_t>1) << (t & 31)
    if split_init(&found, job.n_seq) < 0:
        split_free(&found)
        job.rc = -1
        return
    job.rc = walk_positions(g, job.spec, False, max_len, job.seq, job.lcp, job.skip, job.n_seq,
                            &found, &can_end)
    if job.rc == 0:
        for k in range(found.n_acc):
            t = g.tok_ids[job.seq[found.acc[k]]]
            job.row[t >> 5] |= (<uint32_t>1) << (t & 31)
        if can_end:
            for k in range(job.n_eos):
                t = job.eos_ids[k]
                job.row[t >> 5] |= (<uint32_t>1) << (t & 31)
    split_free(&found)


cdef int split_key(const Tables* g, int32_t max_len, int32_t state, int32_t q,
                   const int32_t* seq, const int32_t* lcp, const int32_t* skip, int32_t n,
                   Scratch* scratch, Split* buf, Split* out,
                   int32_t max_uncertain) noexcept nogil:
    """Walk the vocabulary for the top-state key (state, q) on a partial stack, in ``buf``
    (room for ``n`` tokens), and copy what it found into ``out``, sized to fit."""
    cdef int32_t spec[7]
    cdef int rc
    spec[0] = 1
    spec[1] = 1
    spec[2] = state
    spec[3] = 0
    spec[4] = q
    spec[5] = 0
    spec[6] = 0
    buf.n_acc = 0
    buf.n_unc = 0
    rc = walk_positions(g, spec, True, max_len, seq, lcp, skip, n, buf, NULL, max_uncertain,
                        scratch)
    if rc != 0:
        return rc
    out.acc = <int32_t*>malloc(max(buf.n_acc, 1) * sizeof(int32_t))
    out.unc = <int32_t*>malloc(max(buf.n_unc, 1) * sizeof(int32_t))
    out.unc_lcp = <int32_t*>malloc(max(buf.n_unc, 1) * sizeof(int32_t))
    if out.acc == NULL or out.unc == NULL or out.unc_lcp == NULL:
        return -1
    out.n_acc = buf.n_acc
    out.n_unc = buf.n_unc
    memcpy(out.acc, buf.acc, buf.n_acc * sizeof(int32_t))
    memcpy(out.unc, buf.unc, buf.n_unc * sizeof(int32_t))
    memcpy(out.unc_lcp, buf.unc_lcp, buf.n_unc * sizeof(int32_t))
    return 0


cdef class NativeEngine:
    """C tables of one compiled grammar and the walks over its vocabulary trie.

    Immutable after construction and safe to share between threads: every walk allocates its
    own scratch arena and thread sets. All walks release the GIL.
    """

    cdef Tables g
    cdef object _keep
    cdef int32_t _n_tokens
    cdef int32_t max_len
    cdef const int32_t* all_lcp
    cdef const int32_t* all_seq
    cdef const int32_t* all_skip
    cdef object _cuts
    cdef public int32_t parallel_min_tokens  # shorter vocabularies are walked in one piece
    cdef int32_t _n_eos
    cdef SummaryCache* _summaries

    def __cinit__(self):
        self._summaries = NULL

    def __dealloc__(self):
        if self._summaries != NULL:
            summary_cache_free(self._summaries)
            free(self._summaries)
            self._summaries = NULL

    def __init__(self, action, goto, rule_lhs, rule_len, lex_trans, lex_winner, alive_ptr,
                 alive_terms, alive_ignored, ctx_start, ignored, tok_data, tok_off, tok_lcp,
                 tok_ids, int end_state, eos_ids, final_only, int any_start=-1,
                 indenter=None, bint final_newline=False, summary_nodes=None,
                 int64_t summary_max_bytes=512 * 1024 * 1024):
        cdef int rc = 0
        cdef const int32_t* starts_p
        cdef const int32_t* node_arrays[5]
        cdef int32_t n_starts, n_nodes
        arrays = dict(
            action=np.ascontiguousarray(action, dtype=np.int32),
            goto=np.ascontiguousarray(goto, dtype=np.int32),
            rule_lhs=np.ascontiguousarray(rule_lhs, dtype=np.int32),
            rule_len=np.ascontiguousarray(rule_len, dtype=np.int32),
            lex_trans=np.ascontiguousarray(lex_trans, dtype=np.int32),
            lex_winner=np.ascontiguousarray(lex_winner, dtype=np.int32),
            alive_ptr=np.ascontiguousarray(alive_ptr, dtype=np.int32),
            alive_terms=np.ascontiguousarray(alive_terms, dtype=np.int32),
            alive_ignored=np.ascontiguousarray(alive_ignored, dtype=np.uint8),
            final_only=np.ascontiguousarray(final_only, dtype=np.uint8),
            ctx_start=np.ascontiguousarray(ctx_start, dtype=np.int32),
            ignored=np.ascontiguousarray(ignored, dtype=np.uint8),
            tok_data=np.ascontiguousarray(tok_data, dtype=np.uint8),
            tok_off=np.ascontiguousarray(tok_off, dtype=np.int64),
            tok_lcp=np.ascontiguousarray(tok_lcp, dtype=np.int32),
            tok_ids=np.ascontiguousarray(tok_ids, dtype=np.int64),
            eos_ids=np.ascontiguousarray(eos_ids, dtype=np.int64),
        )
        n_states = arrays["action"].shape[0]
        if indenter is None:
            arrays["bracket_delta"] = np.zeros(max(n_states, 1), dtype=np.int8)
            arrays["indent_state"] = np.zeros(max(n_states, 1), dtype=np.uint8)
            self.g.ind_newline = self.g.ind_indent = self.g.ind_dedent = -1
            self.g.tab_len = 0
        else:
            newline, indent, dedent, tab_len, bracket_delta, indent_state = indenter
            arrays["bracket_delta"] = np.ascontiguousarray(bracket_delta, dtype=np.int8)
            arrays["indent_state"] = np.ascontiguousarray(indent_state, dtype=np.uint8)
            if arrays["bracket_delta"].shape[0] != n_states or arrays["indent_state"].shape[0] != n_states:
                raise ValueError("indenter tables need one entry per parser state")
            self.g.ind_newline, self.g.ind_indent, self.g.ind_dedent = newline, indent, dedent
            self.g.tab_len = tab_len
        for name, dtype in (("tok_data", np.uint8), ("alive_terms", np.int32),
                            ("tok_lcp", np.int32), ("tok_ids", np.int64), ("eos_ids", np.int64)):
            if arrays[name].size == 0:
                arrays[name] = np.zeros(1, dtype=dtype)
        self._keep = arrays
        self.g.action = _i32(arrays["action"])
        self.g.action_cols = arrays["action"].shape[1]
        self.g.goto_ = _i32(arrays["goto"])
        self.g.goto_cols = arrays["goto"].shape[1]
        self.g.rule_lhs = _i32(arrays["rule_lhs"])
        self.g.rule_len = _i32(arrays["rule_len"])
        self.g.lex_trans = _i32(arrays["lex_trans"])
        self.g.lex_winner = _i32(arrays["lex_winner"])
        self.g.alive_ptr = _i32(arrays["alive_ptr"])
        self.g.alive_terms = _i32(arrays["alive_terms"])
        self.g.alive_ignored = _u8(arrays["alive_ignored"])
        self.g.final_only = _u8(arrays["final_only"])
        self.g.ctx_start = _i32(arrays["ctx_start"])
        self.g.ignored = _u8(arrays["ignored"])
        self.g.tok_data = _u8(arrays["tok_data"])
        self.g.tok_off = _i64(arrays["tok_off"])
        self.g.tok_ids = _i64(arrays["tok_ids"])
        self.g.n_lex_states = arrays["lex_winner"].shape[0]
        self.g.end_term = arrays["action"].shape[1] - 1
        self.g.end_state = end_state
        self.g.any_start = any_start
        self.g.final_newline = final_newline
        self.g.bracket_delta = <const int8_t*>cnp.PyArray_DATA(arrays["bracket_delta"])
        self.g.indent_state = _u8(arrays["indent_state"])
        self._n_eos = len(eos_ids)
        self._n_tokens = len(tok_lcp)
        self.all_lcp = _i32(arrays["tok_lcp"])
        lengths = np.diff(arrays["tok_off"])
        self.max_len = int(lengths.max()) if lengths.size else 0
        seq = np.arange(max(self._n_tokens, 1), dtype=np.int32)
        arrays["seq"] = seq
        self.all_seq = _i32(seq)
        skip = np.zeros(max(self._n_tokens, 1), dtype=np.int32)
        arrays["skip"] = skip
        self.all_skip = _i32(skip)
        self._cuts = np.flatnonzero(arrays["tok_lcp"] <= 1).astype(np.int64)  # run starts
        self.parallel_min_tokens = 4096
        with nogil:
            next_shorter_prefix(self.all_lcp, self._n_tokens, <int32_t*>self.all_skip)
        self.g.full_seq = self.all_seq
        self.g.full_lcp = self.all_lcp
        self.g.summaries = NULL
        if summary_nodes is not None and self._n_tokens > 0:
            nodes = [np.ascontiguousarray(a, dtype=np.int32) for a in summary_nodes]
            if len(nodes) != 5 or nodes[4].shape[0] != self._n_tokens \
                    or len({a.shape[0] for a in nodes[:4]}) != 1:
                raise ValueError("summary_nodes must be the trie's (trie_summary_nodes)")
            arrays["summary_nodes"] = nodes
            self._summaries = <SummaryCache*>calloc(1, sizeof(SummaryCache))
            if self._summaries == NULL:
                raise MemoryError()
            starts = np.unique(arrays["ctx_start"]).astype(np.int32)
            if any_start >= 0:
                starts = np.append(starts, np.int32(any_start))
            arrays["lex_starts"] = starts
            starts_p = _i32(starts)
            n_starts = <int32_t>len(starts)
            node_arrays[0] = _i32(nodes[0])
            node_arrays[1] = _i32(nodes[1])
            node_arrays[2] = _i32(nodes[2])
            node_arrays[3] = _i32(nodes[3])
            node_arrays[4] = _i32(nodes[4])
            n_nodes = <int32_t>nodes[0].shape[0]
            with nogil:
                rc = summary_cache_init(self._summaries, node_arrays[0], node_arrays[1],
                                        node_arrays[2], node_arrays[3], node_arrays[4],
                                        n_nodes, self.max_len, self.g.n_lex_states,
                                        summary_max_bytes, self.g.lex_trans,
                                        self.g.lex_winner, starts_p, n_starts,
                                        self.g.ind_newline if self.g.ind_newline >= 0 else -2,
                                        self.g.ignored)
            if rc < 0:
                raise MemoryError()
            self.g.summaries = self._summaries

    @property
    def summary_stats(self):
        """How much the subtree summaries (summary.pxi) are used: the large trie nodes,
        summaries built, the bytes they hold, how many have soft exits and how many are of
        thread sets, whether soft exits are allowed at all, and the seconds spent building."""
        cdef SummaryCache* c = self._summaries
        if c == NULL:
            return {"nodes": 0, "summaries": 0, "bytes": 0, "soft": 0, "threads": 0,
                    "restarts": 0, "soft_exits": False, "build_s": 0.0}
        return {"nodes": c.n_nodes, "summaries": c.used, "bytes": c.nbytes, "soft": c.n_soft,
                "threads": c.n_threads, "restarts": c.n_restarts,
                "soft_exits": bool(c.soft_exits), "build_s": c.build_ns / 1e9}

    @property
    def n_tokens(self):
        return self._n_tokens

    def classify(self, int32_t state, int32_t q):
        """Split the vocabulary for (parser state on top, lexer state) with the stack below
        unknown: (accepted, uncertain) arrays of trie positions, or None on overflow."""
        return self.classify_spec(np.array([1, 1, state, 0, q, 0, 0], dtype=np.int32), True)

    def classify_spec(self, spec, bint partial, positions=None, lcp=None,
                      int32_t max_uncertain=-1):
        """Split the vocabulary for one thread given as a spec (see ``fill_rows``) whose stack
        is the top of the real one (``partial``: the states below are unknown) or all of it:
        (accepted, uncertain) arrays of trie positions, or None on overflow. ``positions``
        (sorted trie positions, with ``lcp`` each relative to the one before) limits the
        split to those tokens, and the arrays returned then index ``positions``. With
        ``max_uncertain`` not negative, the walk stops as soon as more tokens than that are
        uncertain, and the answer is False."""
        cdef const int32_t* seq = self.all_seq
        cdef const int32_t* seq_lcp = self.all_lcp
        cdef const int32_t* skip = self.all_skip
        cdef int32_t n = self._n_tokens
        cdef cnp.ndarray pos_arr, lcp_arr
        cdef Split found
        cdef int rc = -1
        if positions is not None:
            pos_arr = np.ascontiguousarray(positions, dtype=np.int32)
            lcp_arr = np.ascontiguousarray(lcp, dtype=np.int32)
            if len(pos_arr) != len(lcp_arr):
                raise ValueError("positions and prefix lengths differ in length")
            if len(pos_arr) and (pos_arr.min() < 0 or pos_arr.max() >= self._n_tokens):
                raise ValueError("trie position out of range")
            n = <int32_t>len(pos_arr)
            seq = _i32(pos_arr)
            seq_lcp = _i32(lcp_arr)
            skip = NULL
        spec = np.ascontiguousarray(spec, dtype=np.int32)
        cdef int32_t[::1] sp = spec
        with nogil:
            if split_init(&found, n) == 0:
                rc = walk_positions(&self.g, &sp[0], partial, self.max_len, seq, seq_lcp, skip,
                                    n, &found, NULL, max_uncertain)
        try:
            if rc == -2:
                return False
            if rc < 0:
                return None
            return (_copy_i32(found.acc, found.n_acc), _copy_i32(found.unc, found.n_unc))
        finally:
            split_free(&found)

    def split(self, spec, bint partial, MaskEntry parent=None, *, int32_t width,
              int32_t max_uncertain=-1, int32_t deepen_above=-1, int num_threads=1):
        """The mask-cache entry for one thread ``spec`` (see ``fill_rows``) on a ``partial``
        stack or a whole one: the vocabulary split into tokens accepted, rejected and
        uncertain, with the accepted ones as a bitmask row of ``width`` words or, when
        smaller, as sorted ids. Given a ``parent`` entry that holds its split (the same
        thread with less of the stack known), only its uncertain tokens are walked and its
        accepted ones are kept. The entry is marked ``deeper`` when more than
        ``deepen_above`` (when not negative) tokens are uncertain. Returns False when more
        than ``max_uncertain`` are (the walk stops there), None on overflow. A walk of the
        whole vocabulary is cut into ``num_threads`` pieces walked at once."""
        cdef const int32_t* seq = self.all_seq
        cdef const int32_t* seq_lcp = self.all_lcp
        cdef const int32_t* skip = self.all_skip
        cdef int32_t n = self._n_tokens
        cdef Split found
        cdef int rc = -1
        if parent is not None:
            if not parent.has_split:
                raise ValueError("a bare 'deeper' marker holds no split to refine")
            seq, seq_lcp, skip, n = parent.seq, parent.lcp, NULL, parent.n_seq
        spec = np.ascontiguousarray(spec, dtype=np.int32)
        cdef int32_t[::1] sp = spec
        if parent is None and num_threads > 1 and n >= self.parallel_min_tokens:
            return self._split_in_pieces(sp, partial, width, max_uncertain, deepen_above,
                                         min(num_threads, 64))
        with nogil:
            if split_init(&found, n) == 0:
                rc = walk_positions(&self.g, &sp[0], partial, self.max_len, seq, seq_lcp, skip,
                                    n, &found, NULL, max_uncertain)
        try:
            if rc == -2:
                return False
            if rc < 0:
                return None
            return self._entry(&found, seq, parent, width, deepen_above)
        finally:
            split_free(&found)

    def _split_in_pieces(self, int32_t[::1] sp, bint partial, int32_t width,
                         int32_t max_uncertain, int32_t deepen_above, int pieces):
        """``split`` of the whole vocabulary, walked in ``pieces`` runs of the trie order cut
        where tokens share at most one byte, on as many OpenMP threads; the uncertain token
        opening each run gets its common prefix with the last uncertain one before."""
        cdef int32_t n = self._n_tokens, k, c, p, u, prev, m, j
        cdef int32_t[::1] bv = _piece_starts(self._cuts, n, pieces)
        cdef int n_pieces = <int>bv.shape[0] - 1
        cdef Split* found = <Split*>calloc(n_pieces, sizeof(Split))
        cdef int* rcs = <int*>calloc(n_pieces, sizeof(int))
        cdef Split merged
        cdef int32_t n_acc = 0, n_unc = 0
        cdef int shared_unc = 0
        cdef int64_t t
        # each piece's accepted tokens as a bitmask row, set on its own thread
        cdef uint32_t* rows = <uint32_t*>calloc(<size_t>n_pieces * width, sizeof(uint32_t))
        cdef uint32_t* row
        merged.acc = merged.unc = merged.unc_lcp = NULL
        if found == NULL or rcs == NULL or rows == NULL:
            free(found)
            free(rcs)
            free(rows)
            raise MemoryError()
        try:
            with nogil:
                for p in prange(n_pieces, num_threads=n_pieces, schedule="static", chunksize=1):
                    rcs[p] = -1
                    if split_init(&found[p], bv[p + 1] - bv[p]) == 0:
                        rcs[p] = walk_positions(&self.g, &sp[0], partial, self.max_len,
                                                self.all_seq, self.all_lcp, self.all_skip,
                                                bv[p + 1], &found[p], NULL, max_uncertain,
                                                NULL, bv[p], &shared_unc)
                    if rcs[p] == 0:
                        row = rows + <size_t>p * width
                        for k in range(found[p].n_acc):
                            t = self.g.tok_ids[found[p].acc[k]]
                            if t >= <int64_t>width * 32:
                                rcs[p] = -3
                                break
                            row[t >> 5] |= (<uint32_t>1) << (t & 31)
            for c in range(n_pieces):
                if rcs[c] == -1:
                    return None
                if rcs[c] == -3:
                    raise ValueError("token id outside the bitmask width")
            for c in range(n_pieces):
                if rcs[c] == -2:
                    return False
                n_acc += found[c].n_acc
                n_unc += found[c].n_unc
            if max_uncertain >= 0 and n_unc > max_uncertain:
                return False
            if split_init(&merged, max(n_acc, n_unc)) < 0:
                raise MemoryError()
            merged.n_acc = merged.n_unc = 0
            prev = -1
            for c in range(n_pieces):
                memcpy(merged.acc + merged.n_acc, found[c].acc, found[c].n_acc * sizeof(int32_t))
                merged.n_acc += found[c].n_acc
                for k in range(found[c].n_unc):
                    u = found[c].unc[k]
                    merged.unc[merged.n_unc] = u
                    if k == 0:  # its prefix with the last uncertain token of earlier runs
                        m = 0
                        if prev >= 0:
                            m = self.all_lcp[prev + 1]
                            for j in range(prev + 2, u + 1):
                                if self.all_lcp[j] < m:
                                    m = self.all_lcp[j]
                        merged.unc_lcp[merged.n_unc] = m
                    else:
                        merged.unc_lcp[merged.n_unc] = found[c].unc_lcp[k]
                    merged.n_unc += 1
                    prev = u
            for c in range(1, n_pieces):
                row = rows + <size_t>c * width
                for k in range(width):
                    rows[k] |= row[k]
            return self._entry(&merged, self.all_seq, None, width, deepen_above, rows)
        finally:
            for c in range(n_pieces):
                split_free(&found[c])
            free(found)
            free(rcs)
            free(rows)
            split_free(&merged)

    def split_many(self, states, qs, *, int32_t width, int32_t max_uncertain=-1,
                   int32_t deepen_above=-1, int num_threads=1):
        """``split`` for many top-state keys (parser state, lexer state) on partial stacks at
        once, the walks run on ``num_threads`` OpenMP threads with the GIL released: a list
        of entries, False or None, one per key (what ``precompute`` builds)."""
        cdef cnp.ndarray st = np.ascontiguousarray(states, dtype=np.int32)
        cdef cnp.ndarray qa = np.ascontiguousarray(qs, dtype=np.int32)
        cdef Py_ssize_t n = len(st), i
        if len(qa) != n:
            raise ValueError("states and lexer states differ in length")
        cdef const int32_t* sp = _i32(st)
        cdef const int32_t* qp = _i32(qa)
        cdef Split* found = <Split*>calloc(max(n, 1), sizeof(Split))
        cdef int* rcs = <int*>calloc(max(n, 1), sizeof(int))
        cdef int workers = max(1, min(num_threads, 64)), w
        cdef Worker* work = <Worker*>calloc(workers, sizeof(Worker))
        cdef bint ready = found != NULL and rcs != NULL and work != NULL
        if ready:
            for w in range(workers):
                if scratch_init(&work[w].scratch, self.max_len) < 0 \
                        or split_init(&work[w].buf, self._n_tokens) < 0:
                    ready = False
        try:
            if not ready:
                raise MemoryError()
            with nogil:
                for i in prange(n, num_threads=workers, schedule="dynamic", chunksize=1):
                    w = openmp.omp_get_thread_num()
                    rcs[i] = split_key(&self.g, self.max_len, sp[i], qp[i], self.all_seq,
                                       self.all_lcp, self.all_skip, self._n_tokens,
                                       &work[w].scratch, &work[w].buf, &found[i],
                                       max_uncertain)
            out = []
            for i in range(n):
                if rcs[i] == -2:
                    out.append(False)
                elif rcs[i] < 0:
                    out.append(None)
                else:
                    out.append(self._entry(&found[i], self.all_seq, None, width, deepen_above))
            return out
        finally:
            if found != NULL:
                for i in range(n):
                    split_free(&found[i])
            if work != NULL:
                for w in range(workers):
                    scratch_free(&work[w].scratch)
                    split_free(&work[w].buf)
            free(found)
            free(rcs)
            free(work)

    cdef MaskEntry _entry(self, const Split* found, const int32_t* seq, MaskEntry parent,
                          int32_t width, int32_t deepen_above,
                          const uint32_t* acc_row=NULL):
        """A MaskEntry from a walk over ``seq`` and the accepted tokens of ``parent``: its
        bitmask row is shared, not copied (a deeper key adds few ids to it), unless the ids
        would outgrow a row of their own. ``acc_row`` (with no parent) already holds the
        walk's accepted tokens as bits."""
        cdef int32_t k, n_par = 0
        cdef int64_t t
        cdef cnp.ndarray bits = None, ids = None, pos, lcp
        cdef uint32_t* row
        cdef int64_t* idp
        cdef int32_t* pp
        cdef bint shared = False
        if parent is not None:
            n_par = parent.n_acc_ids
            if parent.acc_bits != NULL:
                bits = parent.accepted_bits
                shared = True
        if (<int64_t>n_par + found.n_acc) * 8 < <int64_t>width * 4:
            ids = np.empty(n_par + found.n_acc, dtype=np.int64)
            idp = <int64_t*>cnp.PyArray_DATA(ids)
            for k in range(n_par):
                idp[k] = parent.acc_ids[k]
            for k in range(found.n_acc):
                idp[n_par + k] = self.g.tok_ids[seq[found.acc[k]]]
            ids.sort()
        else:
            bits = np.zeros(width, dtype=np.int32) if bits is None else bits.copy()
            shared = False
            row = <uint32_t*>cnp.PyArray_DATA(bits)
            for k in range(n_par):
                t = parent.acc_ids[k]
                row[t >> 5] |= (<uint32_t>1) << (t & 31)
            if acc_row != NULL and parent is None:
                memcpy(row, acc_row, width * sizeof(uint32_t))
            for k in range(0 if acc_row != NULL and parent is None else found.n_acc):
                t = self.g.tok_ids[seq[found.acc[k]]]
                if t >= <int64_t>width * 32:
                    raise ValueError("token id outside the bitmask width")
                row[t >> 5] |= (<uint32_t>1) << (t & 31)
        pos = np.empty(found.n_unc, dtype=np.int32)
        pp = <int32_t*>cnp.PyArray_DATA(pos)
        for k in range(found.n_unc):
            pp[k] = seq[found.unc[k]]
        lcp = _copy_i32(found.unc_lcp, found.n_unc)
        return MaskEntry(bits, ids, pos, lcp,
                         deeper=deepen_above >= 0 and found.n_unc > deepen_above,
                         shared_bits=shared)

    def fill_rows(self, int32_t[:, ::1] bitmask, list jobs, int num_threads=1):
        """Fill bitmask rows, releasing the GIL for all the work (callers may run several
        ``fill_rows`` calls on plain threads at once: the engine is read-only).

        Each job is ``(row, spec, entry)``: ``spec`` the starting threads as a C-contiguous
        int32 array ``[n, (depth, states..., q, n_shadows, shadows...)*]`` and ``entry`` a
        :class:`MaskEntry` for them, or None to walk the whole vocabulary. EOS ids are set when
        the text is complete. Returns the rows whose job could not be done natively (too many
        threads or shadows); the caller fills those with the reference engine.
        """
        cdef Py_ssize_t n = len(jobs), i
        cdef Job* cj = <Job*>calloc(max(n, 1), sizeof(Job))
        cdef MaskEntry entry
        cdef cnp.ndarray spec
        cdef cnp.ndarray eos = self._keep["eos_ids"]
        cdef int32_t n_eos = self._n_eos
        cdef Py_ssize_t row
        if cj == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                job = jobs[i]
                row = job[0]
                spec = job[1]
                if not 0 <= row < bitmask.shape[0]:
                    raise IndexError(f"row {row} outside a bitmask of {bitmask.shape[0]} rows")
                if spec.dtype.num != cnp.NPY_INT32 or not cnp.PyArray_IS_C_CONTIGUOUS(spec):
                    raise TypeError("thread spec must be a C-contiguous int32 array")
                cj[i].row = <uint32_t*>&bitmask[row, 0]
                cj[i].width = bitmask.shape[1]
                cj[i].spec = <const int32_t*>cnp.PyArray_DATA(spec)
                cj[i].eos_ids = <const int64_t*>cnp.PyArray_DATA(eos)
                cj[i].n_eos = n_eos
                if job[2] is None:
                    cj[i].seq = self.all_seq
                    cj[i].lcp = self.all_lcp
                    cj[i].skip = self.all_skip
                    cj[i].n_seq = self._n_tokens
                else:
                    entry = <MaskEntry?>job[2]
                    if entry.deeper:
                        raise ValueError("a 'deeper' cache entry holds no mask")
                    if entry.width > bitmask.shape[1]:
                        raise ValueError("cached mask is wider than this bitmask")
                    cj[i].acc_bits = entry.acc_bits
                    cj[i].acc_width = entry.width
                    cj[i].acc_ids = entry.acc_ids
                    cj[i].n_acc_ids = entry.n_acc_ids
                    cj[i].seq = entry.seq
                    cj[i].lcp = entry.lcp
                    cj[i].n_seq = entry.n_seq
            if num_threads <= 1 or n <= 1:
                with nogil:
                    for i in range(n):
                        run_job(&self.g, self.max_len, &cj[i])
            else:
                with nogil:
                    for i in prange(n, num_threads=num_threads, schedule="dynamic", chunksize=1):
                        run_job(&self.g, self.max_len, &cj[i])
            return [jobs[i][0] for i in range(n) if cj[i].rc != 0]
        finally:
            free(cj)


cdef class MaskEntry:
    """One mask-cache entry: tokens certainly accepted (a bitmask row, sorted ids, or both: a
    deeper key's entry shares its parent's row and adds ids) and the trie positions still to
    check on the real stack, with their common prefix lengths. Immutable; holds raw pointers
    into its own arrays for the fill loop.

    ``deeper=True`` marks a key whose split left too many tokens uncertain: it holds no
    tokens, and the lookup goes on to a key with more of the stack known."""

    cdef readonly object accepted_bits
    cdef readonly object accepted_ids
    cdef readonly object uncertain_pos
    cdef readonly object uncertain_lcp
    cdef readonly bint deeper
    cdef readonly bint shared_bits
    cdef const uint32_t* acc_bits
    cdef const int64_t* acc_ids
    cdef int32_t n_acc_ids
    cdef const int32_t* seq
    cdef const int32_t* lcp
    cdef int32_t n_seq
    cdef int32_t width

    def __init__(self, accepted_bits, accepted_ids, uncertain_pos, uncertain_lcp,
                 bint deeper=False, bint shared_bits=False):
        cdef cnp.ndarray arr
        self.deeper = deeper
        self.shared_bits = shared_bits and accepted_bits is not None
        self.accepted_bits = None if accepted_bits is None else np.ascontiguousarray(accepted_bits, dtype=np.int32)
        self.accepted_ids = None if accepted_ids is None else np.ascontiguousarray(accepted_ids, dtype=np.int64)
        self.uncertain_pos = np.ascontiguousarray(uncertain_pos, dtype=np.int32)
        self.uncertain_lcp = np.ascontiguousarray(uncertain_lcp, dtype=np.int32)
        if len(self.uncertain_pos) != len(self.uncertain_lcp):
            raise ValueError("uncertain positions and prefix lengths differ in length")
        if self.accepted_bits is not None:
            arr = self.accepted_bits
            self.acc_bits = <const uint32_t*>cnp.PyArray_DATA(arr)
            self.width = len(self.accepted_bits)
        if self.accepted_ids is not None and len(self.accepted_ids):
            arr = self.accepted_ids
            self.acc_ids = <const int64_t*>cnp.PyArray_DATA(arr)
            self.n_acc_ids = len(self.accepted_ids)
        if len(self.uncertain_pos):
            arr = self.uncertain_pos
            self.seq = <const int32_t*>cnp.PyArray_DATA(arr)
            arr = self.uncertain_lcp
            self.lcp = <const int32_t*>cnp.PyArray_DATA(arr)
            self.n_seq = len(self.uncertain_pos)

    @property
    def has_split(self):
        """Does this entry hold its tokens? (A bare ``deeper`` marker holds none.)"""
        return not self.deeper or self.accepted_bits is not None or self.n_acc_ids > 0 \
            or self.n_seq > 0

    def accepted_token_ids(self):
        """The certainly accepted token ids, sorted (int64)."""
        ids = self.accepted_ids if self.accepted_ids is not None else np.zeros(0, np.int64)
        if self.accepted_bits is not None:
            bits = np.unpackbits(self.accepted_bits.view(np.uint8), bitorder="little")
            return np.union1d(np.flatnonzero(bits), ids).astype(np.int64)
        return ids

    @property
    def nbytes(self):
        """Bytes this entry holds (a row shared with its parent is the parent's)."""
        own = self.uncertain_pos.nbytes + self.uncertain_lcp.nbytes + 200
        if self.accepted_ids is not None:
            own += self.accepted_ids.nbytes
        if self.accepted_bits is not None and not self.shared_bits:
            own += self.accepted_bits.nbytes
        return int(own)


def _piece_starts(cuts, int32_t n, int pieces):
    """Where ``pieces`` runs of about equal length start (at ``cuts``), and ``n`` at the end."""
    starts = [0]
    for c in range(1, pieces):  # (no negative indexing: the module turns wraparound off)
        at = int(cuts[min(np.searchsorted(cuts, c * n // pieces), len(cuts) - 1)])
        if starts[len(starts) - 1] < at < n:
            starts.append(at)
    starts.append(n)
    return np.array(starts, dtype=np.int32)


cdef cnp.ndarray _copy_i32(const int32_t* src, int32_t n):
    out = np.empty(n, dtype=np.int32)
    if n > 0:
        memcpy(cnp.PyArray_DATA(out), src, n * sizeof(int32_t))
    return out


cdef inline const int32_t* _i32(cnp.ndarray arr):
    return <const int32_t*>cnp.PyArray_DATA(arr)


cdef inline const uint8_t* _u8(cnp.ndarray arr):
    return <const uint8_t*>cnp.PyArray_DATA(arr)


cdef inline const int64_t* _i64(cnp.ndarray arr):
    return <const int64_t*>cnp.PyArray_DATA(arr)
