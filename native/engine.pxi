# The native mask engine: the reference engine's thread semantics (structgen/reference.py) on
# C arrays, walking the sorted vocabulary trie with the GIL released.
#
# A parser stack lives in an arena of (state, parent) nodes; a walk pushes nodes as lexemes end
# and drops them by resetting the arena top when the depth-first walk backs up, so trying a
# token costs no copies. For the mask cache, a walk can start from a *partial* stack whose only
# known state is the top one: the node below it is UNKNOWN_STATE, and a reduction that needs it
# makes the outcome "uncertain" (decided later on the real stack).

from libc.stdlib cimport malloc, realloc, free, calloc
from libc.stdint cimport int8_t, uint8_t

cdef enum:
    MAX_THREADS = 16
    MAX_SHADOWS = 4
    UNKNOWN = -2           # feed() result: the stack below the known part decides
    UNKNOWN_STATE = -2     # state of the sentinel node under a partial stack
    ST_REJECT = 0
    ST_ACCEPT = 1
    ST_UNCERTAIN = 2


cdef struct Thread:
    int32_t node
    int32_t q
    int32_t nsh
    int32_t sh[MAX_SHADOWS]


cdef struct TSet:
    int32_t n
    int32_t unk
    int32_t overflow
    Thread t[MAX_THREADS]


cdef struct Arena:
    int32_t* state
    int32_t* parent
    int32_t size
    int32_t cap
    int32_t failed


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
    const int32_t* ctx_start
    const uint8_t* ignored
    const uint8_t* tok_data
    const int64_t* tok_off
    int32_t n_lex_states


cdef int arena_init(Arena* a, int32_t cap) noexcept nogil:
    a.state = <int32_t*>malloc(cap * sizeof(int32_t))
    a.parent = <int32_t*>malloc(cap * sizeof(int32_t))
    a.size = 0
    a.cap = cap
    a.failed = 0
    return 0 if (a.state != NULL and a.parent != NULL) else -1


cdef void arena_free(Arena* a) noexcept nogil:
    free(a.state)
    free(a.parent)
    a.state = NULL
    a.parent = NULL


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
        a.cap *= 2
    a.state[a.size] = state
    a.parent[a.size] = parent
    a.size += 1
    return a.size - 1


cdef int32_t feed(const Tables* g, Arena* a, int32_t node, int32_t term) noexcept nogil:
    """Shift ``term`` after the reductions it triggers: new top node, -1 rejected, UNKNOWN."""
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


cdef void tset_step(const Tables* g, Arena* a, const TSet* src, uint8_t b, TSet* dst) noexcept nogil:
    cdef int32_t k, j, nsh, s2, r, q2, w, n2
    cdef int32_t sh[MAX_SHADOWS]
    cdef bint ok
    cdef const Thread* th
    dst.n = 0
    dst.unk = 0
    dst.overflow = 0
    for k in range(src.n):
        th = &src.t[k]
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
            if g.ignored[w]:
                n2 = th.node
            else:
                n2 = feed(g, a, th.node, w)
            if n2 == UNKNOWN:
                dst.unk = 1
            elif n2 >= 0:
                r = g.lex_trans[g.ctx_start[a.state[n2]] * 256 + b]
                if r >= 0:
                    tset_add(dst, n2, r, sh, nsh, q2)


cdef int thread_viability(const Tables* g, Arena* a, const Thread* th) noexcept nogil:
    """1: its partial lexeme can end as a terminal the stack takes; 0: cannot; 2: unknown."""
    cdef int32_t k, r, top = a.size
    cdef int res = 0
    if th.q < 0 or g.alive_ignored[th.q]:
        return 1
    for k in range(g.alive_ptr[th.q], g.alive_ptr[th.q + 1]):
        r = feed(g, a, th.node, g.alive_terms[k])
        a.size = top
        if r >= 0:
            return 1
        if r == UNKNOWN:
            res = 2
    return res


cdef int walk(const Tables* g, Arena* a, const int32_t* seq, const int32_t* lcp, int32_t n,
              TSet* sets, uint8_t* unk, int32_t* marks, int8_t* memo, int32_t memo_node,
              uint8_t* status) noexcept nogil:
    """Depth-first walk of tokens ``seq`` (trie order; ``lcp`` relative to the previous one).

    ``sets[0]`` holds the starting threads. ``status[k]`` gets ST_ACCEPT, ST_REJECT or
    ST_UNCERTAIN for token ``seq[k]``. Returns -1 if a thread set overflowed (caller falls back
    to the reference engine) or memory ran out.
    """
    cdef int32_t k, i, common, depth, L, valid = 0, j
    cdef int best, v
    cdef uint8_t dead_status = ST_REJECT
    cdef const uint8_t* tok
    cdef Thread* th
    unk[0] = sets[0].unk
    marks[0] = a.size
    for k in range(n):
        i = seq[k]
        common = lcp[k]
        if common > valid:
            status[k] = dead_status
            continue
        a.size = marks[common]
        tok = g.tok_data + g.tok_off[i]
        L = <int32_t>(g.tok_off[i + 1] - g.tok_off[i])
        depth = common
        while depth < L:
            tset_step(g, a, &sets[depth], tok[depth], &sets[depth + 1])
            if sets[depth + 1].overflow or a.failed:
                return -1
            unk[depth + 1] = unk[depth] | <uint8_t>sets[depth + 1].unk
            depth += 1
            marks[depth] = a.size
            if sets[depth].n == 0:
                break
        if depth == L and sets[L].n > 0:
            valid = L
            best = 0
            for j in range(sets[L].n):
                th = &sets[L].t[j]
                if memo != NULL and th.node == memo_node and th.q >= 0:
                    v = memo[th.q]
                    if v < 0:
                        v = thread_viability(g, a, th)
                        memo[th.q] = <int8_t>v
                else:
                    v = thread_viability(g, a, th)
                if v == 1:
                    best = 1
                    break
                if v == 2:
                    best = 2
            if best == 1:
                status[k] = ST_ACCEPT
            elif best == 2 or unk[L]:
                status[k] = ST_UNCERTAIN
            else:
                status[k] = ST_REJECT
            a.size = marks[L]
        else:
            valid = depth - 1
            dead_status = ST_UNCERTAIN if unk[depth] else ST_REJECT
            status[k] = dead_status
    return 0


cdef class NativeEngine:
    """C tables of one compiled grammar and the walks over its vocabulary trie.

    Immutable after construction and safe to share between threads: every walk allocates its
    own arena and thread sets. All walks release the GIL.
    """

    cdef Tables g
    cdef object _keep
    cdef int32_t n_tokens
    cdef int32_t max_len
    cdef const int32_t* all_lcp
    cdef int32_t* all_seq
    cdef const int64_t* tok_ids

    def __cinit__(self):
        self.all_seq = NULL

    def __init__(self, action, goto, rule_lhs, rule_len, lex_trans, lex_winner, alive_ptr,
                 alive_terms, alive_ignored, ctx_start, ignored, tok_data, tok_off, tok_lcp,
                 tok_ids):
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
            ctx_start=np.ascontiguousarray(ctx_start, dtype=np.int32),
            ignored=np.ascontiguousarray(ignored, dtype=np.uint8),
            tok_data=np.ascontiguousarray(tok_data, dtype=np.uint8),
            tok_off=np.ascontiguousarray(tok_off, dtype=np.int64),
            tok_lcp=np.ascontiguousarray(tok_lcp, dtype=np.int32),
            tok_ids=np.ascontiguousarray(tok_ids, dtype=np.int64),
        )
        if arrays["tok_data"].size == 0:
            arrays["tok_data"] = np.zeros(1, dtype=np.uint8)
        if arrays["alive_terms"].size == 0:
            arrays["alive_terms"] = np.zeros(1, dtype=np.int32)
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
        self.g.ctx_start = _i32(arrays["ctx_start"])
        self.g.ignored = _u8(arrays["ignored"])
        self.g.tok_data = _u8(arrays["tok_data"])
        self.g.tok_off = _i64(arrays["tok_off"])
        self.g.n_lex_states = arrays["lex_winner"].shape[0]
        self.n_tokens = arrays["tok_lcp"].shape[0]
        self.all_lcp = _i32(arrays["tok_lcp"])
        self.tok_ids = _i64(arrays["tok_ids"])
        lengths = np.diff(arrays["tok_off"])
        self.max_len = int(lengths.max()) if lengths.size else 0
        seq = np.arange(self.n_tokens, dtype=np.int32)
        arrays["seq"] = seq
        self.all_seq = _i32(seq)

    @property
    def n_tokens(self):
        return self.n_tokens

    cdef int _run(self, list stacks, const int32_t[::1] qs, list shadows, bint partial,
                  const int32_t* seq, const int32_t* lcp, int32_t n, uint8_t* status) except -2:
        """Set up the starting threads (under the GIL), then walk without it."""
        cdef Arena a
        cdef TSet* sets
        cdef uint8_t* unk
        cdef int32_t* marks
        cdef int8_t* memo = NULL
        cdef int32_t memo_node = -1, node, k, j, depth = self.max_len + 1
        cdef int rc
        cdef Thread* th
        if arena_init(&a, 1024) < 0:
            raise MemoryError()
        sets = <TSet*>malloc((depth + 1) * sizeof(TSet))
        unk = <uint8_t*>malloc((depth + 1) * sizeof(uint8_t))
        marks = <int32_t*>malloc((depth + 1) * sizeof(int32_t))
        if sets == NULL or unk == NULL or marks == NULL:
            free(sets); free(unk); free(marks); arena_free(&a)
            raise MemoryError()
        try:
            sets[0].n = 0
            sets[0].unk = 0
            sets[0].overflow = 0
            if len(stacks) > MAX_THREADS:
                return -1
            for k in range(len(stacks)):
                node = -1
                if partial:
                    node = arena_push(&a, UNKNOWN_STATE, -1)
                for st in stacks[k]:
                    node = arena_push(&a, <int32_t>st, node)
                th = &sets[0].t[sets[0].n]
                th.node = node
                th.q = qs[k]
                sh = shadows[k]
                if len(sh) > MAX_SHADOWS:
                    return -1
                th.nsh = len(sh)
                for j in range(len(sh)):
                    th.sh[j] = <int32_t>sh[j]
                sets[0].n += 1
            if len(stacks) == 1 and not shadows[0]:
                memo = <int8_t*>malloc(self.g.n_lex_states * sizeof(int8_t))
                if memo != NULL:
                    for j in range(self.g.n_lex_states):
                        memo[j] = -1
                    memo_node = sets[0].t[0].node
            with nogil:
                rc = walk(&self.g, &a, seq, lcp, n, sets, unk, marks, memo, memo_node, status)
            return rc
        finally:
            free(sets); free(unk); free(marks); free(memo); arena_free(&a)

    def classify(self, int32_t state, int32_t q):
        """Split the vocabulary for (parser state on top, lexer state) with the stack below
        unknown: returns (accepted, uncertain) arrays of trie positions, or None on overflow."""
        status = np.empty(self.n_tokens, dtype=np.uint8)
        cdef uint8_t[::1] st = status
        cdef int32_t[::1] qv = np.array([q], dtype=np.int32)
        rc = self._run([[state]], qv, [()], True, self.all_seq, self.all_lcp, self.n_tokens,
                       &st[0] if self.n_tokens else NULL)
        if rc < 0:
            return None
        accepted = np.flatnonzero(status == ST_ACCEPT).astype(np.int32)
        uncertain = np.flatnonzero(status == ST_UNCERTAIN).astype(np.int32)
        return accepted, uncertain

    def check_positions(self, list stacks, qs, list shadows, const int32_t[::1] seq,
                        const int32_t[::1] lcp):
        """Status of the tokens at trie positions ``seq`` on real stacks (bottom to top)."""
        cdef int32_t n = seq.shape[0]
        status = np.zeros(n, dtype=np.uint8)
        cdef uint8_t[::1] st = status
        cdef int32_t[::1] qv = np.ascontiguousarray(qs, dtype=np.int32)
        if n == 0:
            return status
        rc = self._run(stacks, qv, shadows, False, &seq[0], &lcp[0], n, &st[0])
        if rc < 0:
            return None
        return status

    def check_all(self, list stacks, qs, list shadows):
        """Status of every token in trie order on real stacks; None on overflow."""
        status = np.zeros(self.n_tokens, dtype=np.uint8)
        cdef uint8_t[::1] st = status
        cdef int32_t[::1] qv = np.ascontiguousarray(qs, dtype=np.int32)
        if self.n_tokens == 0:
            return status
        rc = self._run(stacks, qv, shadows, False, self.all_seq, self.all_lcp, self.n_tokens,
                       &st[0])
        if rc < 0:
            return None
        return status

    def __dealloc__(self):
        self.all_seq = NULL


cdef inline const int32_t* _i32(cnp.ndarray arr):
    return <const int32_t*>cnp.PyArray_DATA(arr)


cdef inline const uint8_t* _u8(cnp.ndarray arr):
    return <const uint8_t*>cnp.PyArray_DATA(arr)


cdef inline const int64_t* _i64(cnp.ndarray arr):
    return <const int64_t*>cnp.PyArray_DATA(arr)
