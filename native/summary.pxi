# Subtree summaries: a whole-vocabulary walk's in-lexeme tokens settled in bulk.
#
# A walk spends most of its time inside lexemes: after " F" in SQL, a thousand tokens (" FROM",
# " Foo", " File", ...) only move the lexer DFA, byte by byte, and end in one of a few lexer
# states whose viability on the stack node is all that decides them. What such a token does
# from lexer state q depends only on q and its own bytes, so for a trie node with many tokens
# below it and a state q, one pass records per token its fate (``summary_build``):
#
#   * the lexer state it ends in, as a group index (it stayed inside the lexeme: accepted iff
#     that state is viable on the node, uncertain iff viability is unknown);
#   * DEAD: the lexer died where no lexeme could end (rejected);
#   * EXIT: a lexeme may end inside it (the walk steps it byte by byte as before).
#
# The walk then visits a summarized node's tokens by reading their codes, asking viability
# once per group. Summaries depend on no parser state, so every walk of the grammar shares them
# (the " F" node after any finished name, in any query); they are built under a lock the first
# time a walk needs them, kept for the engine's life, and bounded in bytes.
# A summary indexes trie positions, so any walk of a sorted set of tokens can use it.

from libc.stdint cimport int16_t, uint64_t
from libc.string cimport memcmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef enum:
    SUMMARY_DEAD = -1
    SUMMARY_EXIT = -2
    SUMMARY_SOFT_DEAD = -3      # died after a soft exit (see summary_build)
    SUMMARY_SOFT = 0x4000       # flag on a group code: passed a soft exit
    SUMMARY_MAX_GROUPS = 2048   # distinct end states a summary may hold (int16 codes)
    SUMMARY_TABLE = 4096        # open-addressing slots for those groups while building
    SUMMARY_RESTART = -1        # lex[0] of a restart summary: [RESTART, old state, start state]
    SUMMARY_NO_SOFT = -3        # no_soft_term that allows no soft exit at all
    SUMMARY_MAX_THREADS = 4     # thread sets summarized (a comment after a line break: 2)
    SUMMARY_MAX_LEX = 1 + SUMMARY_MAX_THREADS * (2 + MAX_SHADOWS)
    SUMMARY_SLOTS = 262144      # (node, lexer state) pairs an engine keeps: half of this


cdef struct Summary:
    int16_t* code          # per token below the node: group, SUMMARY_DEAD or SUMMARY_EXIT
    int32_t* group_q       # per group: the lexer state its tokens end in, per thread (or -1)
    int32_t lex[SUMMARY_MAX_LEX]  # the threads' lexer states it is for (see summary_get)
    int32_t n_lex
    int32_t n_groups       # 0 with code NULL: not worth using (mostly EXIT, or too many groups)
    int32_t soft_term      # the terminal its soft exits would end, or -1 (summary_build)
    int32_t soft_thread    # ... in which thread (summary_build_threads)
    bint any_soft          # some token passed a soft exit (of an ignored terminal, if threads)


# (node, lexer states) pairs map to summaries in an open-addressing table read without the
# lock (walks in pieces look summaries up all the time; a locked lookup made two threads no
# faster than one): slots are written once, and a grown table replaces the old one, which
# stays allocated for readers still on it.
cdef struct SummaryTable:
    int64_t* keys          # _lex_key, or -1
    Summary** vals
    int64_t cap
    SummaryTable* older    # the table this one replaced (readers may still be on it)


cdef struct SummaryCache:
    openmp.omp_lock_t lock
    const int32_t* node_start  # the trie's (TokenTrie.summary_nodes, shared by its grammars)
    const int32_t* node_depth
    const int32_t* node_end
    const int32_t* node_parent
    const int32_t* deepest
    int32_t n_nodes
    SummaryTable* table    # grows (doubling, up to SUMMARY_SLOTS) under the lock
    int64_t used
    int64_t nbytes
    int64_t max_bytes      # past this, no new summaries (walks go on byte by byte)
    int64_t n_soft         # summaries with soft exits, and of thread sets (for tests)
    int64_t n_threads
    int64_t n_restarts
    int32_t n_lex_states
    int32_t max_len
    int32_t no_soft_term   # terminal never ended softly (the indenter's newline), -2 for none
    bint soft_exits        # no lexer state is final inside a character: soft exits are exact
    const uint8_t* soft_ok # per terminal: may end softly in a thread set (the ignored ones)
    Summary unusable       # the shared answer for pairs not worth summarizing
    int64_t build_ns       # time spent building summaries (for benchmarks)


# The trie nodes worth summarizing (at least ``min_tokens`` tokens below): their first token,
# depth, one past their last token and the node above (or -1), and per token the deepest such
# node holding it, so a walk of any sorted subset of the vocabulary finds them. They depend on
# the vocabulary alone: the trie computes them once (trie_summary_nodes) for all its grammars.
cdef struct NodeLists:
    int32_t* node_start
    int32_t* node_depth
    int32_t* node_end
    int32_t* node_parent
    int32_t* deepest
    int32_t n_nodes
    int32_t max_len


cdef int summary_nodes(NodeLists* c, const int32_t* lcp, const int64_t* tok_off, int32_t n,
                       int32_t min_tokens) noexcept nogil:
    """List the trie nodes with at least ``min_tokens`` tokens below them (tokens in trie
    order, ``lcp`` each with the one before; one pass keeping the open nodes on a stack), by
    increasing depth, each with the node above it, and per token the deepest one holding it."""
    cdef int32_t k, d, c0, L, top = 0, m = 0, cap = 64, i, x
    cdef int32_t* open_start = <int32_t*>malloc((c.max_len + 2) * sizeof(int32_t))
    cdef int32_t* rec = <int32_t*>malloc(3 * cap * sizeof(int32_t))  # (start, depth, end)
    cdef int32_t* grown
    cdef int32_t* at_depth = <int32_t*>calloc(c.max_len + 2, sizeof(int32_t))
    c.deepest = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    if open_start == NULL or rec == NULL or at_depth == NULL or c.deepest == NULL:
        free(open_start)
        free(rec)
        free(at_depth)
        return -1
    # open_start[d - 1] is the first token of the open node at depth d (depths 1..top)
    for k in range(n + 1):
        c0 = 0 if (k == 0 or k == n) else lcp[k]
        while top > c0:
            if k - open_start[top - 1] >= min_tokens:
                if m == cap:
                    grown = <int32_t*>realloc(rec, 6 * cap * sizeof(int32_t))
                    if grown == NULL:
                        free(open_start)
                        free(rec)
                        free(at_depth)
                        return -1
                    rec = grown
                    cap *= 2
                rec[3 * m] = open_start[top - 1]
                rec[3 * m + 1] = top
                rec[3 * m + 2] = k
                m += 1
            top -= 1
        if k == n:
            break
        L = <int32_t>(tok_off[k + 1] - tok_off[k])
        for d in range(top, L):
            open_start[d] = k
        if L > top:
            top = L
    free(open_start)
    c.n_nodes = m
    c.node_start = <int32_t*>malloc(max(m, 1) * sizeof(int32_t))
    c.node_depth = <int32_t*>malloc(max(m, 1) * sizeof(int32_t))
    c.node_end = <int32_t*>malloc(max(m, 1) * sizeof(int32_t))
    c.node_parent = <int32_t*>malloc(max(m, 1) * sizeof(int32_t))
    if c.node_start == NULL or c.node_depth == NULL or c.node_end == NULL \
            or c.node_parent == NULL:
        free(rec)
        free(at_depth)
        return -1
    # by increasing depth (counting sort), then each node's tokens take it as their deepest
    for i in range(m):
        at_depth[rec[3 * i + 1] + 1] += 1
    for d in range(c.max_len + 1):
        at_depth[d + 1] += at_depth[d]
    for i in range(m):
        x = at_depth[rec[3 * i + 1]]
        at_depth[rec[3 * i + 1]] += 1
        c.node_start[x] = rec[3 * i]
        c.node_depth[x] = rec[3 * i + 1]
        c.node_end[x] = rec[3 * i + 2]
    free(rec)
    free(at_depth)
    memset(c.deepest, 0xFF, max(n, 1) * sizeof(int32_t))
    for x in range(m):
        c.node_parent[x] = c.deepest[c.node_start[x]]
        for k in range(c.node_start[x], c.node_end[x]):
            c.deepest[k] = x
    return 0


def trie_summary_nodes(lcp, tok_off, int32_t min_tokens):
    """The trie nodes with at least ``min_tokens`` tokens below them, as int32 arrays (first
    token, depth, end, parent node, and per token its deepest node): see summary_nodes."""
    cdef cnp.ndarray lcp_a = np.ascontiguousarray(lcp, dtype=np.int32)
    cdef cnp.ndarray off_a = np.ascontiguousarray(tok_off, dtype=np.int64)
    cdef NodeLists c
    cdef int rc
    cdef int32_t n = <int32_t>lcp_a.shape[0]
    cdef const int32_t* lcp_p = _i32(lcp_a)
    cdef const int64_t* off_p = _i64(off_a)
    if off_a.shape[0] != n + 1:
        raise ValueError("tok_off needs one entry per token plus one")
    lengths = np.diff(off_a)
    c.max_len = int(lengths.max()) if n else 0
    c.node_start = c.node_depth = c.node_end = c.node_parent = c.deepest = NULL
    with nogil:
        rc = summary_nodes(&c, lcp_p, off_p, n, min_tokens)
    try:
        if rc < 0:
            raise MemoryError()
        return (_copy_i32(c.node_start, c.n_nodes), _copy_i32(c.node_depth, c.n_nodes),
                _copy_i32(c.node_end, c.n_nodes), _copy_i32(c.node_parent, c.n_nodes),
                _copy_i32(c.deepest, n))
    finally:
        free(c.node_start)
        free(c.node_depth)
        free(c.node_end)
        free(c.node_parent)
        free(c.deepest)


cdef int final_inside_character(const int32_t* trans, const int32_t* winner, int32_t n_states,
                                const int32_t* starts, int32_t n_starts) noexcept nogil:
    """1 if some lexer state reached from ``starts`` by UTF-8 text stops inside a character
    and is final (a byte-level terminal), 0 if none, -1 out of memory. Each state is visited
    with how many continuation bytes are still due."""
    cdef uint8_t* seen = <uint8_t*>calloc(<size_t>n_states * 4, sizeof(uint8_t))
    cdef int32_t* todo = <int32_t*>malloc(<size_t>n_states * 4 * sizeof(int32_t))
    cdef int32_t top = 0, i, x, p, b, q2, p2, found = 0
    if seen == NULL or todo == NULL:
        free(seen)
        free(todo)
        return -1
    for i in range(n_starts):
        if starts[i] >= 0 and not seen[4 * starts[i]]:
            seen[4 * starts[i]] = 1
            todo[top] = 4 * starts[i]
            top += 1
    while top > 0 and not found:
        top -= 1
        x = todo[top] // 4
        p = todo[top] % 4
        if p > 0 and winner[x] >= 0:
            found = 1
            break
        for b in range(256):
            q2 = trans[x * 256 + b]
            if q2 < 0:
                continue
            if p == 0:
                if b < 0x80:
                    p2 = 0
                else:
                    p2 = utf8_tail(<uint8_t>b)
                    if p2 == 0:
                        continue  # not a character's first byte
            elif 0x80 <= b <= 0xBF:
                p2 = p - 1
            else:
                continue
            if not seen[4 * q2 + p2]:
                seen[4 * q2 + p2] = 1
                todo[top] = 4 * q2 + p2
                top += 1
    free(seen)
    free(todo)
    return found


cdef void summary_free(Summary* s) noexcept nogil:
    if s != NULL:
        free(s.code)
        free(s.group_q)
        free(s)


cdef Summary* _worth_keeping(Summary* s, int32_t n_exit, int32_t n) noexcept nogil:
    """``s``, or it with ``code`` NULL when most of its tokens must be stepped anyway."""
    if 2 * n_exit > n:
        free(s.code)
        s.code = NULL
        s.n_groups = 0
    return s


cdef SummaryTable* _table_new(int64_t cap) noexcept nogil:
    cdef SummaryTable* t = <SummaryTable*>calloc(1, sizeof(SummaryTable))
    if t == NULL:
        return NULL
    t.cap = cap
    t.keys = <int64_t*>malloc(cap * sizeof(int64_t))
    t.vals = <Summary**>calloc(cap, sizeof(Summary*))
    if t.keys == NULL or t.vals == NULL:
        free(t.keys)
        free(t.vals)
        free(t)
        return NULL
    memset(t.keys, 0xFF, cap * sizeof(int64_t))
    return t


cdef int summary_cache_init(SummaryCache* c, const int32_t* node_start,
                            const int32_t* node_depth, const int32_t* node_end,
                            const int32_t* node_parent, const int32_t* deepest,
                            int32_t n_nodes, int32_t max_len, int32_t n_lex_states,
                            int64_t max_bytes, const int32_t* trans,
                            const int32_t* winner, const int32_t* starts, int32_t n_starts,
                            int32_t no_soft_term, const uint8_t* ignored) noexcept nogil:
    cdef int found
    c.node_start = node_start
    c.node_depth = node_depth
    c.node_end = node_end
    c.node_parent = node_parent
    c.deepest = deepest
    c.n_nodes = n_nodes
    c.used = 0
    c.nbytes = 0
    c.n_soft = 0
    c.n_threads = 0
    c.n_restarts = 0
    c.max_bytes = max_bytes
    c.n_lex_states = n_lex_states
    c.max_len = max_len
    c.unusable.code = NULL
    c.unusable.group_q = NULL
    c.unusable.n_groups = 0
    c.no_soft_term = no_soft_term
    c.soft_ok = ignored
    openmp.omp_init_lock(&c.lock)
    c.table = _table_new(256)
    if c.table == NULL:
        return -1
    found = final_inside_character(trans, winner, n_lex_states, starts, n_starts)
    if found < 0:
        return -1
    c.soft_exits = found == 0
    return 0


cdef void summary_cache_free(SummaryCache* c) noexcept nogil:
    cdef int64_t i
    cdef SummaryTable* t = c.table
    cdef SummaryTable* older
    if t != NULL:
        for i in range(t.cap):
            if t.vals[i] != &c.unusable:
                summary_free(t.vals[i])
    while t != NULL:
        older = t.older
        free(t.keys)
        free(t.vals)
        free(t)
        t = older
    c.table = NULL
    openmp.omp_destroy_lock(&c.lock)


cdef inline int64_t _slot(int64_t key, int64_t cap) noexcept nogil:
    cdef uint64_t h = <uint64_t>key * <uint64_t>0x9E3779B97F4A7C15
    return <int64_t>((h >> 20) & <uint64_t>(cap - 1))


# acquire loads and release stores (GCC builtins) of the table's key slots and pointers
cdef extern from *:
    """
    #define SG_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define SG_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
    """
    int64_t SG_LOAD_KEY "SG_LOAD"(const int64_t* p) nogil
    void SG_STORE_KEY "SG_STORE"(int64_t* p, int64_t v) nogil
    SummaryTable* SG_LOAD_TABLE "SG_LOAD"(SummaryTable** p) nogil
    void SG_STORE_TABLE "SG_STORE"(SummaryTable** p, SummaryTable* v) nogil
    Summary* SG_LOAD_SUMMARY "SG_LOAD"(Summary** p) nogil


cdef inline Summary* _table_find(SummaryCache* c, int64_t key) noexcept nogil:
    """The summary kept for ``key``, or NULL; safe without the lock (slots are written once,
    the value before the key, and a replaced table is not freed)."""
    cdef SummaryTable* t = SG_LOAD_TABLE(&c.table)
    cdef int64_t j = _slot(key, t.cap), seen
    while True:
        seen = SG_LOAD_KEY(&t.keys[j])
        if seen == key:
            return SG_LOAD_SUMMARY(&t.vals[j])
        if seen < 0:
            return NULL
        j = (j + 1) & (t.cap - 1)


cdef int _table_put(SummaryCache* c, int64_t key, Summary* val) noexcept nogil:
    """Insert (the lock held), first moving to a table twice the size past half full; -1
    past SUMMARY_SLOTS slots or out of memory."""
    cdef SummaryTable* t = c.table
    cdef SummaryTable* grown
    cdef int64_t i, j
    if 2 * (c.used + 1) > t.cap:
        if 2 * t.cap > SUMMARY_SLOTS:
            return -1
        grown = _table_new(2 * t.cap)
        if grown == NULL:
            return -1
        for i in range(t.cap):
            if t.keys[i] >= 0:
                j = _slot(t.keys[i], grown.cap)
                while grown.keys[j] >= 0:
                    j = (j + 1) & (grown.cap - 1)
                grown.keys[j] = t.keys[i]
                grown.vals[j] = t.vals[i]
        grown.older = t
        SG_STORE_TABLE(&c.table, grown)
        t = grown
    j = _slot(key, t.cap)
    while t.keys[j] >= 0:
        j = (j + 1) & (t.cap - 1)
    t.vals[j] = val
    SG_STORE_KEY(&t.keys[j], key)
    c.used += 1
    return 0


cdef inline int32_t utf8_tail(uint8_t b) noexcept nogil:
    """Continuation bytes after the UTF-8 lead byte ``b`` (0 for any other byte)."""
    if 0xC2 <= b <= 0xDF:
        return 1
    if 0xE0 <= b <= 0xEF:
        return 2
    if 0xF0 <= b <= 0xF4:
        return 3
    return 0


cdef Summary* summary_build(const int32_t* trans, const int32_t* winner, const uint8_t* tok_data,
                            const int64_t* tok_off, const int32_t* lcp, int32_t max_len,
                            int32_t q, int32_t k0, int32_t depth, int32_t end,
                            int32_t no_soft_term, int32_t restart=-1) noexcept nogil:
    """The fate of tokens ``k0..end - 1`` (all below one trie node at ``depth``) from lexer
    state ``q``, as ``lexeme_step`` would find it, or NULL when out of memory. A summary
    that would be mostly EXIT, or hold too many groups, comes back with ``code`` NULL.

    A *soft* exit is a lexeme that may end before a multi-byte character (a name followed by
    "Арх"): the walk would also try ending it there and starting a new lexeme with that
    character, but longest match drops that branch as soon as the lexeme continued through
    the whole character is final again (when no lexer state is final inside a character,
    ``SummaryCache.soft_exits``). Such a token stays in the summary, flagged SUMMARY_SOFT:
    its only trace is whether ending the lexeme there (terminal ``soft_term``, the same for
    the whole summary; never ``no_soft_term``; SUMMARY_NO_SOFT allows none) needs the
    unknown stack.

    With ``restart`` (a lexer start state), the lexeme in ``q`` is final and ends at the
    node: each token's first byte must end it (else EXIT) and starts a new lexeme from
    ``restart`` (the walk ends the old one once, on the stack, for all of them). This covers
    nodes like "(" whose tokens "(Image", "(self" ... all open a new lexeme there.
    """
    cdef int32_t n = end - k0, kk, j, c, L, x, q2, filled = depth, n_exit = 0, h, w, pend
    cdef bint soft
    cdef int32_t* qd = <int32_t*>malloc((max_len + 2) * sizeof(int32_t))
    cdef int32_t* pd = <int32_t*>malloc((max_len + 2) * sizeof(int32_t))
    cdef uint8_t* sd = <uint8_t*>malloc((max_len + 2) * sizeof(uint8_t))
    cdef int32_t* table = <int32_t*>malloc(SUMMARY_TABLE * sizeof(int32_t))
    cdef Summary* s = <Summary*>calloc(1, sizeof(Summary))
    cdef const uint8_t* tok
    if s != NULL:
        s.code = <int16_t*>malloc(max(n, 1) * sizeof(int16_t))
        s.group_q = <int32_t*>malloc(SUMMARY_MAX_GROUPS * sizeof(int32_t))
        s.soft_term = -1
    if qd == NULL or pd == NULL or sd == NULL or table == NULL or s == NULL \
            or s.code == NULL or s.group_q == NULL:
        free(qd)
        free(pd)
        free(sd)
        free(table)
        summary_free(s)
        return NULL
    memset(table, 0xFF, SUMMARY_TABLE * sizeof(int32_t))
    # after d bytes: qd[d] the lexer state (or DEAD / EXIT, sticky), sd[d] whether a soft
    # exit was passed, pd[d] where the character after a soft exit ends (0: not inside one)
    qd[depth] = q
    sd[depth] = 0
    pd[depth] = 0
    for kk in range(k0, end):
        c = depth if kk == k0 else lcp[kk]
        L = <int32_t>(tok_off[kk + 1] - tok_off[kk])
        if c > filled:  # shares more than the prefix stepped: a DEAD or EXIT prefix
            c = filled
            L = filled
        x = qd[c]
        soft = sd[c]
        pend = pd[c]
        tok = tok_data + tok_off[kk]
        j = c
        if restart >= 0 and L == depth:
            x = SUMMARY_EXIT  # ends with the old lexeme: not a restart
        while j < L and x >= 0:
            q2 = trans[x * 256 + tok[j]]
            if restart >= 0 and j == depth:
                if winner[x] >= 0 and q2 < 0:  # the old lexeme must end: a new one starts
                    x = trans[restart * 256 + tok[j]]
                    if x < 0:
                        x = SUMMARY_DEAD
                else:
                    x = SUMMARY_EXIT
            elif pend > 0:  # inside the character after a soft exit
                if q2 < 0:
                    x = SUMMARY_EXIT  # the other branch may live on
                else:
                    x = q2
                    if j + 1 == pend:
                        pend = 0
                        if winner[x] < 0:
                            x = SUMMARY_EXIT  # longest match does not drop the other branch
            elif winner[x] >= 0 and not (q2 >= 0 and winner[q2] >= 0):
                w = winner[x]
                if q2 >= 0 and utf8_tail(tok[j]) > 0 and no_soft_term != SUMMARY_NO_SOFT \
                        and w != no_soft_term \
                        and (s.soft_term < 0 or s.soft_term == w):
                    s.soft_term = w
                    soft = True
                    pend = j + 1 + utf8_tail(tok[j])
                    x = q2
                else:
                    x = SUMMARY_EXIT  # a lexeme may end here: the walk's general step
            elif q2 < 0:
                x = SUMMARY_DEAD
            else:
                x = q2
            j += 1
            qd[j] = x
            sd[j] = soft
            pd[j] = pend
        filled = j
        if x >= 0 and pend > 0:
            x = SUMMARY_EXIT  # ends inside the character: the other branch is alive
        if x >= 0:
            h = <int32_t>((<uint32_t>x * <uint32_t>40503) & (SUMMARY_TABLE - 1))
            while table[h] >= 0 and s.group_q[table[h]] != x:
                h = (h + 1) & (SUMMARY_TABLE - 1)
            if table[h] < 0:
                if s.n_groups == SUMMARY_MAX_GROUPS:
                    n_exit = n  # too many groups: not worth it
                    break
                table[h] = s.n_groups
                s.group_q[s.n_groups] = x
                s.n_groups += 1
            s.code[kk - k0] = <int16_t>(table[h] | (SUMMARY_SOFT if soft else 0))
        elif x == SUMMARY_DEAD and soft:
            s.code[kk - k0] = SUMMARY_SOFT_DEAD
        else:
            s.code[kk - k0] = <int16_t>x
            if x == SUMMARY_EXIT:
                n_exit += 1
    free(qd)
    free(pd)
    free(sd)
    free(table)
    return _worth_keeping(s, n_exit, n)


cdef Summary* summary_build_threads(const int32_t* trans, const int32_t* winner,
                                   const uint8_t* tok_data, const int64_t* tok_off,
                                   const int32_t* lcp, int32_t max_len, const int32_t* lex,
                                   int32_t k0, int32_t depth, int32_t end,
                                   const uint8_t* soft_ok, int32_t no_soft_term) noexcept nogil:
    """``summary_build`` for a set of threads, each in the middle of a lexeme, some with
    shadows (``lex`` as in summary_get), as ``tset_step`` steps them: a shadow that reaches
    a final state drops its thread, a dead shadow is dropped. A group is the lexer state
    each thread ends in (-1: dropped or dead); a token is DEAD when all threads are, EXIT
    when a lexeme may end in one of them. Soft exits (see summary_build; NULL ``soft_ok``
    allows none): of terminals with ``soft_ok`` (ignored ones: ending them never needs the
    stack) in any thread, and of one other terminal (``soft_term``, never ``no_soft_term``)
    in one thread (``soft_thread``), whose ending may need the unknown stack."""
    cdef int32_t T = lex[0], n = end - k0, kk, j, c, L, i, m, h, st, b, q, q2, s2, k, w
    cdef int32_t filled = depth, n_exit = 0, alive, pos, W = 3 + MAX_SHADOWS
    cdef uint32_t hv
    cdef bint killed
    # per depth d and thread i, at cfg + (d * T + i) * W: the lexer state (-1 none), where
    # the character after a soft exit ends (0: not inside one), the number of shadows and
    # the shadows; status[d]: 0, SUMMARY_DEAD or SUMMARY_EXIT
    cdef int32_t* cfg = <int32_t*>malloc(<size_t>(max_len + 2) * T * W * sizeof(int32_t))
    cdef int32_t* status = <int32_t*>malloc((max_len + 2) * sizeof(int32_t))
    cdef uint8_t* softd = <uint8_t*>malloc((max_len + 2) * sizeof(uint8_t))
    cdef int32_t* table = <int32_t*>malloc(SUMMARY_TABLE * sizeof(int32_t))
    cdef Summary* s = <Summary*>calloc(1, sizeof(Summary))
    cdef bint soft
    cdef int32_t* cur
    cdef int32_t* nxt
    cdef const uint8_t* tok
    if s != NULL:
        s.code = <int16_t*>malloc(max(n, 1) * sizeof(int16_t))
        s.group_q = <int32_t*>malloc(SUMMARY_MAX_GROUPS * T * sizeof(int32_t))
        s.soft_term = -1
    if cfg == NULL or status == NULL or softd == NULL or table == NULL or s == NULL \
            or s.code == NULL or s.group_q == NULL:
        free(cfg)
        free(status)
        free(softd)
        free(table)
        summary_free(s)
        return NULL
    memset(table, 0xFF, SUMMARY_TABLE * sizeof(int32_t))
    pos = 1
    for i in range(T):
        cur = cfg + (depth * T + i) * W
        cur[0] = lex[pos]
        cur[1] = 0
        cur[2] = lex[pos + 1]
        for k in range(lex[pos + 1]):
            cur[3 + k] = lex[pos + 2 + k]
        pos += 2 + lex[pos + 1]
    status[depth] = 0
    softd[depth] = 0
    for kk in range(k0, end):
        c = depth if kk == k0 else lcp[kk]
        L = <int32_t>(tok_off[kk + 1] - tok_off[kk])
        if c > filled:
            c = filled
            L = filled
        st = status[c]
        soft = softd[c]
        tok = tok_data + tok_off[kk]
        j = c
        while j < L and st == 0:
            b = tok[j]
            alive = 0
            for i in range(T):
                cur = cfg + (j * T + i) * W
                nxt = cfg + ((j + 1) * T + i) * W
                q = cur[0]
                nxt[0] = -1
                nxt[1] = 0
                nxt[2] = 0
                if q < 0:
                    continue
                killed = False
                m = 0
                for k in range(cur[2]):
                    s2 = trans[cur[3 + k] * 256 + b]
                    if s2 < 0:
                        continue
                    if winner[s2] >= 0:
                        killed = True
                        break
                    nxt[3 + m] = s2
                    m += 1
                if killed:
                    continue
                q2 = trans[q * 256 + b]
                nxt[2] = m
                if cur[1] > 0:  # inside the character after a soft exit
                    if q2 < 0 or (j + 1 == cur[1] and winner[q2] < 0):
                        st = SUMMARY_EXIT  # the other branch may live on
                        break
                    nxt[0] = q2
                    nxt[1] = 0 if j + 1 == cur[1] else cur[1]
                    alive += 1
                    continue
                if winner[q] >= 0 and not (q2 >= 0 and winner[q2] >= 0):
                    w = winner[q]
                    if soft_ok != NULL and q2 >= 0 and utf8_tail(<uint8_t>b) > 0 and (
                            soft_ok[w] or (w != no_soft_term and (
                                s.soft_term < 0 or (s.soft_term == w and s.soft_thread == i))
                            )):
                        if not soft_ok[w]:
                            s.soft_term = w
                            s.soft_thread = i
                            soft = True
                        s.any_soft = True
                        nxt[0] = q2
                        nxt[1] = j + 1 + utf8_tail(<uint8_t>b)
                        alive += 1
                        continue
                    st = SUMMARY_EXIT
                    break
                if q2 >= 0:
                    nxt[0] = q2
                    alive += 1
            if st == 0 and alive == 0:
                st = SUMMARY_DEAD
            j += 1
            status[j] = st
            softd[j] = soft
        filled = j
        if st == 0:
            for i in range(T):
                if cfg[(j * T + i) * W + 1] > 0:
                    st = SUMMARY_EXIT  # ends inside a character: the other branch is alive
        if st == 0:
            hv = 2166136261
            for i in range(T):
                hv = (hv ^ <uint32_t>cfg[(j * T + i) * W]) * <uint32_t>16777619
            h = <int32_t>(hv & (SUMMARY_TABLE - 1))
            while table[h] >= 0:
                m = table[h]
                for i in range(T):
                    if s.group_q[m * T + i] != cfg[(j * T + i) * W]:
                        break
                else:
                    break
                h = (h + 1) & (SUMMARY_TABLE - 1)
            if table[h] < 0:
                if s.n_groups == SUMMARY_MAX_GROUPS:
                    n_exit = n  # too many groups: not worth it
                    break
                table[h] = s.n_groups
                for i in range(T):
                    s.group_q[s.n_groups * T + i] = cfg[(j * T + i) * W]
                s.n_groups += 1
            s.code[kk - k0] = <int16_t>(table[h] | (SUMMARY_SOFT if soft else 0))
        elif st == SUMMARY_DEAD and soft:
            s.code[kk - k0] = SUMMARY_SOFT_DEAD
        else:
            s.code[kk - k0] = <int16_t>st
            if st == SUMMARY_EXIT:
                n_exit += 1
    free(cfg)
    free(status)
    free(softd)
    free(table)
    return _worth_keeping(s, n_exit, n)


cdef inline int64_t _lex_key(int32_t node, const int32_t* lex, int32_t n_lex) noexcept nogil:
    """A table key for (node, threads' lexer states): a 63-bit hash (summaries keep ``lex``
    to tell a collision)."""
    cdef uint64_t h = <uint64_t>node * <uint64_t>0x9E3779B97F4A7C15 + <uint64_t>n_lex
    cdef int32_t i
    for i in range(n_lex):
        h ^= <uint64_t><uint32_t>lex[i] + <uint64_t>0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)
    h ^= h >> 31
    h *= <uint64_t>0xBF58476D1CE4E5B9
    h ^= h >> 29
    return <int64_t>(h >> 1)


cdef const Summary* summary_get(SummaryCache* c, const int32_t* trans, const int32_t* winner,
                                const uint8_t* tok_data, const int64_t* tok_off,
                                const int32_t* lcp, int32_t node, const int32_t* lex,
                                int32_t n_lex, bint may_build) noexcept nogil:
    """The summary of trie node ``node`` (an index into the node lists) for threads whose
    lexer states are ``lex`` ([threads, then per thread: lexer state, shadows, the shadows'
    states]; or a restart, see summary_build); NULL when there is none to use. With
    ``may_build``, one not met before is built (under the lock) and kept.

    Built at first sight. Building only when a pair came back (and walking its first meeting
    byte by byte) cost more: that first walk took 2 to 7 ms from a Python string's or
    comment's lexer state, against 1 to 4 ms for building and using the summaries, and
    first-pass p99 was higher with it on SQL (1,021 against 954 µs), Python (1,002 / 950),
    Go (808 / 790) and JSONSchemaBench (2,529 / 2,335)."""
    cdef int64_t key = _lex_key(node, lex, n_lex)
    cdef int32_t k0 = c.node_start[node]
    cdef Summary* s = _table_find(c, key)
    cdef int32_t* shrunk
    cdef timespec t0, t1
    if s == NULL and may_build and c.nbytes < c.max_bytes and 2 * (c.used + 1) <= SUMMARY_SLOTS:
        openmp.omp_set_lock(&c.lock)
        s = _table_find(c, key)  # another thread may have built it meanwhile
        if s == NULL:
            clock_gettime(CLOCK_MONOTONIC, &t0)
            if lex[0] == 1 and lex[2] == 0:
                s = summary_build(trans, winner, tok_data, tok_off, lcp, c.max_len, lex[1],
                                  k0, c.node_depth[node], c.node_end[node],
                                  c.no_soft_term if c.soft_exits else SUMMARY_NO_SOFT)
            elif lex[0] == SUMMARY_RESTART:
                s = summary_build(trans, winner, tok_data, tok_off, lcp, c.max_len, lex[1],
                                  k0, c.node_depth[node], c.node_end[node],
                                  c.no_soft_term if c.soft_exits else SUMMARY_NO_SOFT, lex[2])
            else:
                s = summary_build_threads(trans, winner, tok_data, tok_off, lcp, c.max_len,
                                          lex, k0, c.node_depth[node], c.node_end[node],
                                          c.soft_ok if c.soft_exits else NULL, c.no_soft_term)
            clock_gettime(CLOCK_MONOTONIC, &t1)
            c.build_ns += (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
            if s != NULL and s.code == NULL:
                summary_free(s)
                s = &c.unusable
            elif s != NULL:
                memcpy(s.lex, lex, n_lex * sizeof(int32_t))
                s.n_lex = n_lex
                shrunk = <int32_t*>realloc(s.group_q,
                                           max(s.n_groups * max(lex[0], 1), 1) * sizeof(int32_t))
                if shrunk != NULL:
                    s.group_q = shrunk
            if s != NULL and _table_put(c, key, s) < 0:
                if s != &c.unusable:
                    summary_free(s)
                s = NULL  # no room: walked byte by byte
            if s != NULL and s != &c.unusable:
                c.nbytes += (c.node_end[node] - k0) * sizeof(int16_t) \
                    + s.n_groups * max(lex[0], 1) * sizeof(int32_t)
                c.n_threads += lex[0] > 1
                c.n_restarts += lex[0] == SUMMARY_RESTART
                c.n_soft += s.soft_term >= 0 or s.any_soft
        openmp.omp_unset_lock(&c.lock)
    if s == NULL or s.code == NULL or s.n_lex != n_lex \
            or memcmp(s.lex, lex, n_lex * sizeof(int32_t)) != 0:
        return NULL
    return s


def lexer_final_inside_character(lex_trans, lex_winner, starts) -> bool:
    """Whether a lexer state reached from ``starts`` by UTF-8 text is final inside a
    character (then summaries take no soft exits); ``lex_trans`` is (states, 256)."""
    trans = np.ascontiguousarray(lex_trans, dtype=np.int32)
    winner = np.ascontiguousarray(lex_winner, dtype=np.int32)
    st = np.ascontiguousarray(starts, dtype=np.int32)
    if trans.ndim != 2 or trans.shape[1] != 256 or winner.shape[0] != trans.shape[0]:
        raise ValueError("lex_trans must be (states, 256) with one winner per state")
    if trans.size and (trans.max() >= trans.shape[0] or (st.size and st.max() >= trans.shape[0])):
        raise ValueError("a transition or start names no state")
    found = final_inside_character(_i32(trans), _i32(winner), <int32_t>trans.shape[0],
                                   _i32(st), <int32_t>st.shape[0])
    if found < 0:
        raise MemoryError()
    return found == 1
