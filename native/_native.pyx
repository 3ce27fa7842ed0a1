# cython: language_level=3
"""structgen's native core: one extension module built from the ``.pxi`` files it includes.

Every function here has a pure-Python twin in the ``structgen`` package; tests compare them.
Hot loops are ``noexcept nogil`` and the Python-facing wrappers release the GIL around them.
"""

include "bitset.pxi"
include "engine.pxi"
include "trie.pxi"
include "matcher.pxi"
include "lexer.pxi"
