# The product DFA of a lexer context, breadth first (Python twin: structgen/lexer.py
# _product_python). A product state is the vector of its terminals' states in one table of
# global terminal-DFA states (row 0: dead); vectors are interned in an open-addressing hash.

from libc.stdint cimport uint64_t
from libc.string cimport memcmp

cdef inline uint64_t _hash_vec(const int32_t* v, Py_ssize_t k) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL
    cdef Py_ssize_t j
    for j in range(k):
        h = (h ^ <uint32_t>v[j]) * 1099511628211ULL
    return h ^ (h >> 29)


def product_dfa(const int32_t[:, ::1] table, const int64_t[::1] rep, const int64_t[::1] class_of,
                const int32_t[::1] starts, Py_ssize_t max_states):
    """States (int32 [n, k], each a vector of terminal states) and transitions (int32 [n, 256],
    -1 dead) of the product of the terminal DFAs whose start states are ``starts``, numbered
    in breadth-first order with each state's successors taken in byte order; ``rep`` is the
    smallest byte of each byte class and ``class_of`` each byte's class. None when it would
    need more than ``max_states`` states."""
    cdef Py_ssize_t k = starts.shape[0], n_cls = rep.shape[0], cap = 64, n = 1, i, c, j
    cdef Py_ssize_t n_slots = 256, s, mask
    cdef int32_t* vecs = <int32_t*>malloc(cap * max(k, 1) * sizeof(int32_t))
    cdef int32_t* targets = <int32_t*>malloc(cap * max(n_cls, 1) * sizeof(int32_t))
    cdef int32_t* slots = <int32_t*>malloc(n_slots * sizeof(int32_t))
    cdef int32_t* tmp = <int32_t*>malloc(max(k, 1) * sizeof(int32_t))
    cdef int32_t* grown
    cdef int32_t found, v
    cdef bint live, failed = False, too_many = False
    if vecs == NULL or targets == NULL or slots == NULL or tmp == NULL:
        free(vecs)
        free(targets)
        free(slots)
        free(tmp)
        raise MemoryError()
    if table.shape[1] != 256 or class_of.shape[0] != 256:
        free(vecs)
        free(targets)
        free(slots)
        free(tmp)
        raise ValueError("a table of 256 columns and a class for each of 256 bytes")
    try:
        with nogil:
            memset(slots, 0xFF, n_slots * sizeof(int32_t))
            for j in range(k):
                vecs[j] = starts[j]
            slots[_hash_vec(vecs, k) & (n_slots - 1)] = 0
            i = 0
            while i < n and not failed:
                for c in range(n_cls):
                    live = False
                    for j in range(k):
                        v = table[vecs[i * k + j], rep[c]]
                        tmp[j] = v
                        if v != 0:
                            live = True
                    if not live:
                        targets[i * n_cls + c] = -1
                        continue
                    mask = n_slots - 1
                    s = _hash_vec(tmp, k) & mask
                    found = -1
                    while slots[s] >= 0:
                        if memcmp(vecs + slots[s] * k, tmp, k * sizeof(int32_t)) == 0:
                            found = slots[s]
                            break
                        s = (s + 1) & mask
                    if found < 0:
                        if n >= max_states:
                            too_many = True
                            failed = True
                            break
                        if n == cap:
                            cap *= 2
                            grown = <int32_t*>realloc(vecs, cap * max(k, 1) * sizeof(int32_t))
                            if grown == NULL:
                                failed = True
                                break
                            vecs = grown
                            grown = <int32_t*>realloc(targets, cap * max(n_cls, 1) * sizeof(int32_t))
                            if grown == NULL:
                                failed = True
                                break
                            targets = grown
                        memcpy(vecs + n * k, tmp, k * sizeof(int32_t))
                        found = <int32_t>n
                        slots[s] = found
                        n += 1
                        if 2 * n > n_slots:  # rehash into twice the slots
                            free(slots)
                            n_slots *= 2
                            slots = <int32_t*>malloc(n_slots * sizeof(int32_t))
                            if slots == NULL:
                                failed = True
                                break
                            memset(slots, 0xFF, n_slots * sizeof(int32_t))
                            mask = n_slots - 1
                            for j in range(n):
                                s = _hash_vec(vecs + j * k, k) & mask
                                while slots[s] >= 0:
                                    s = (s + 1) & mask
                                slots[s] = <int32_t>j
                    targets[i * n_cls + c] = found
                i += 1
        if too_many:
            return None
        if failed:
            raise MemoryError()
        states = np.empty((n, k), dtype=np.int32)
        trans = np.empty((n, 256), dtype=np.int32)
        _fill_product(states, trans, vecs, targets, class_of, n, k, n_cls)
        return states, trans
    finally:
        free(vecs)
        free(targets)
        free(slots)
        free(tmp)


cdef void _fill_product(int32_t[:, ::1] states, int32_t[:, ::1] trans, const int32_t* vecs,
                        const int32_t* targets, const int64_t[::1] class_of, Py_ssize_t n,
                        Py_ssize_t k, Py_ssize_t n_cls) noexcept nogil:
    cdef Py_ssize_t i, j, b
    for i in range(n):
        for j in range(k):
            states[i, j] = vecs[i * k + j]
        for b in range(256):
            trans[i, b] = targets[i * n_cls + class_of[b]]
