# The matcher's state in C: parser stacks as persistent nodes in an arena shared by a matcher
# and its forks, and immutable snapshots (one per accepted token) of the thread set.
# Python twin: structgen/reference.py (ReferenceEngine.advance / can_end / settle).
#
# Nodes are only ever appended; a snapshot names its threads' top nodes, so rolling back is
# dropping snapshots and forking is sharing them: O(1), nothing copied. Node memory goes back
# when the last matcher of a lineage is gone, or at once on rollback while the arena has never
# been shared. A lock guards appends, so forks may advance on different threads at the same
# time with the GIL released.

from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)


cdef class NodeArena:
    """Parser-stack nodes of one matcher lineage (a matcher and all its forks)."""

    cdef Arena a
    cdef PyThread_type_lock lock
    cdef public bint shared

    def __cinit__(self):
        if arena_init(&self.a, 256) < 0:
            arena_free(&self.a)
            raise MemoryError()
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            arena_free(&self.a)
            raise MemoryError()
        self.shared = False

    def __dealloc__(self):
        arena_free(&self.a)
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    @property
    def n_nodes(self):
        return self.a.size


cdef class Snapshot:
    """The thread set after some prefix; immutable."""

    cdef TSet ts
    cdef int32_t mark
    cdef readonly bint terminated

    def ended(self):
        """This state with the stop token accepted."""
        cdef Snapshot out = Snapshot.__new__(Snapshot)
        out.ts = self.ts
        out.mark = self.mark
        out.terminated = True
        return out

    @property
    def n_threads(self):
        return self.ts.n


cdef int tset_settle(const Tables* g, Arena* a, TSet* src, TSet* dst) noexcept nogil:
    """End partial lexemes that cannot grow (ReferenceEngine.settle)."""
    cdef int32_t k, w, n2
    cdef Thread* th
    dst.n = 0
    dst.unk = 0
    dst.overflow = 0
    dst.col = src.col
    for k in range(src.n):
        th = &src.t[k]
        if th.q >= 0:
            w = g.lex_winner[th.q]
            if w >= 0 and g.final_only[th.q]:
                n2 = complete(g, a, th.node, w, src.col)
                if n2 >= 0:
                    tset_add(dst, n2, -1, th.sh, th.nsh, -1)
                continue
        tset_add(dst, th.node, th.q, th.sh, th.nsh, -1)
    return -1 if dst.overflow else 0


cdef int advance_bytes(const Tables* g, Arena* a, const TSet* start, const uint8_t* data,
                       Py_ssize_t n, TSet* out) noexcept nogil:
    """1: advanced and viable; 0: rejected; -1: thread set overflow."""
    cdef TSet cur
    cdef TSet nxt
    cdef Py_ssize_t i
    cdef int32_t k, top
    cdef bint ok = False
    cur = start[0]
    for i in range(n):
        tset_step(g, a, &cur, data[i], &nxt)
        if nxt.overflow or a.failed:
            return -1
        if nxt.n == 0:
            return 0
        cur = nxt
    if tset_settle(g, a, &cur, out) < 0:
        return -1
    top = a.size
    for k in range(out.n):
        if thread_viability(g, a, &out.t[k]) == 1:
            ok = True
            break
    a.size = top
    return 1 if ok else 0


cdef class NativeMatcherCore:
    """Advancing, ending and describing snapshots for one NativeEngine (stateless itself)."""

    cdef NativeEngine engine

    def __init__(self, NativeEngine engine):
        self.engine = engine

    def initial(self, NodeArena arena, int32_t start_state):
        cdef Snapshot snap = Snapshot.__new__(Snapshot)
        cdef int32_t node
        PyThread_acquire_lock(arena.lock, WAIT_LOCK)
        node = arena_push(&arena.a, start_state, -1)
        snap.mark = arena.a.size
        PyThread_release_lock(arena.lock)
        if node < 0:
            raise MemoryError()
        snap.ts.n = 1
        snap.ts.unk = 0
        snap.ts.overflow = 0
        snap.ts.col = 0
        snap.ts.t[0].node = node
        snap.ts.t[0].q = -1
        snap.ts.t[0].nsh = 0
        snap.terminated = False
        return snap

    def advance(self, NodeArena arena, Snapshot snap, const uint8_t[::1] data):
        """The snapshot after ``data``; None if rejected; False if the thread set outgrew the
        native limits (the caller continues with the reference engine). Releases the GIL."""
        cdef Snapshot out = Snapshot.__new__(Snapshot)
        cdef int rc
        cdef int32_t before
        cdef Py_ssize_t n = data.shape[0]
        cdef const uint8_t* ptr = &data[0] if n else NULL
        with nogil:
            PyThread_acquire_lock(arena.lock, WAIT_LOCK)
            before = arena.a.size
            rc = advance_bytes(&self.engine.g, &arena.a, &snap.ts, ptr, n, &out.ts)
            if rc != 1:
                arena.a.size = before  # nothing of this attempt is referenced
                arena.a.failed = 0
            out.mark = arena.a.size
            PyThread_release_lock(arena.lock)
        if rc == 1:
            out.terminated = False
            return out
        return None if rc == 0 else False

    def can_end(self, NodeArena arena, Snapshot snap):
        """Is the text a complete sentence? Releases the GIL."""
        cdef bint ok
        cdef int32_t top
        with nogil:
            PyThread_acquire_lock(arena.lock, WAIT_LOCK)
            top = arena.a.size
            ok = tset_can_end(&self.engine.g, &arena.a, &snap.ts)
            arena.a.size = top
            PyThread_release_lock(arena.lock)
        return ok

    def truncate(self, NodeArena arena, Snapshot snap):
        """Free the nodes made after ``snap`` (only for an arena nobody else shares)."""
        if arena.shared:
            return
        PyThread_acquire_lock(arena.lock, WAIT_LOCK)
        if snap.mark <= arena.a.size:
            arena.a.size = snap.mark
        PyThread_release_lock(arena.lock)

    def spec(self, NodeArena arena, Snapshot snap):
        """(int32 thread spec for fill jobs, mask-cache key or None), as NativeMasker.spec_of:
        ``[n, (depth, (state, aux) bottom..top, q, n_shadows, shadows...)*, column]``."""
        cdef int32_t k, j, node, depth, total = 1, pos, top_state = -1
        cdef Thread* th
        cdef cnp.ndarray out
        cdef int32_t* o
        PyThread_acquire_lock(arena.lock, WAIT_LOCK)
        for k in range(snap.ts.n):
            th = &snap.ts.t[k]
            depth = 0
            node = th.node
            while node >= 0:
                depth += 1
                node = arena.a.parent[node]
            total += 3 + 2 * depth + th.nsh
        total += 1
        out = np.empty(total, dtype=np.int32)
        o = <int32_t*>cnp.PyArray_DATA(out)
        o[0] = snap.ts.n
        pos = 1
        for k in range(snap.ts.n):
            th = &snap.ts.t[k]
            depth = 0
            node = th.node
            while node >= 0:
                depth += 1
                node = arena.a.parent[node]
            o[pos] = depth
            node = th.node
            top_state = arena.a.state[node] if node >= 0 else -1
            for j in range(depth):
                o[pos + 2 * (depth - j) - 1] = arena.a.state[node]
                o[pos + 2 * (depth - j)] = arena.a.aux[node]
                node = arena.a.parent[node]
            pos += 2 * depth + 1
            o[pos] = th.q
            o[pos + 1] = th.nsh
            for j in range(th.nsh):
                o[pos + 2 + j] = th.sh[j]
            pos += 2 + th.nsh
        o[pos] = snap.ts.col
        PyThread_release_lock(arena.lock)
        if snap.ts.n == 1 and snap.ts.t[0].nsh == 0:
            return out, (top_state, snap.ts.t[0].q)
        return out, None

    def threads(self, NodeArena arena, Snapshot snap):
        """The snapshot as reference-engine threads: [(states bottom..top, q, shadows, aux
        bottom..top)] with global lexer state ids, and the indentation column."""
        cdef list result = []
        cdef int32_t k, j, node
        cdef Thread* th
        PyThread_acquire_lock(arena.lock, WAIT_LOCK)
        try:
            for k in range(snap.ts.n):
                th = &snap.ts.t[k]
                states = []
                aux = []
                node = th.node
                while node >= 0:
                    states.append(arena.a.state[node])
                    aux.append(arena.a.aux[node])
                    node = arena.a.parent[node]
                states.reverse()
                aux.reverse()
                result.append((states, th.q, tuple(th.sh[j] for j in range(th.nsh)), aux))
        finally:
            PyThread_release_lock(arena.lock)
        return result, snap.ts.col
