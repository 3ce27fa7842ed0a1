# Common-prefix lengths of a sorted token list (Python twin: structgen/trie.py _lcp_python).

def sorted_lcp(const uint8_t[::1] data, const int64_t[::1] offsets):
    """lcp[i] = bytes token i shares with token i - 1 (tokens = data[offsets[i]:offsets[i+1]])."""
    cdef Py_ssize_t n = offsets.shape[0] - 1, i, j, la, lb, m
    out = np.zeros(max(n, 0), dtype=np.int32)
    cdef int32_t[::1] o = out
    if n <= 0:
        return out
    with nogil:
        for i in range(1, n):
            la = offsets[i] - offsets[i - 1]
            lb = offsets[i + 1] - offsets[i]
            m = la if la < lb else lb
            j = 0
            while j < m and data[offsets[i - 1] + j] == data[offsets[i] + j]:
                j += 1
            o[i] = <int32_t>j
    return out
