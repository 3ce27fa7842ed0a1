"""structgen: exact, fast constrained decoding for language models.

Compile a Lark grammar (or a built-in one) for a tokenizer, then let a ``GrammarMatcher`` give
the exact set of tokens that keep the output inside the grammar, one step at a time::

    info = TokenizerInfo.from_byte_strings([...], eos_token_ids=[...])
    compiled = GrammarCompiler(info).compile_builtin("json")
    matcher = GrammarMatcher(compiled)
    bitmask = allocate_token_bitmask(1, info.vocab_size)
    matcher.fill_next_token_bitmask(bitmask)
"""

from .batch import batch_fill_next_token_bitmask
from .bitmask import allocate_token_bitmask, apply_token_bitmask_inplace, bitmask_to_ids
from .compiler import CompiledGrammar, GrammarCompiler
from .errors import (
    ConfigurationError,
    GrammarError,
    RegexError,
    SerializationError,
    StructgenError,
    TokenizerError,
    UnsupportedFeatureError,
)
from .generate import GenerationResult, generate, load_default_model
from .grammar import Grammar
from .matcher import GrammarMatcher
from .tokenizer_info import TokenizerInfo

__version__ = "0.1.0"

__all__ = [
    "CompiledGrammar",
    "ConfigurationError",
    "GenerationResult",
    "Grammar",
    "GrammarCompiler",
    "GrammarError",
    "GrammarMatcher",
    "RegexError",
    "SerializationError",
    "StructgenError",
    "TokenizerError",
    "TokenizerInfo",
    "UnsupportedFeatureError",
    "allocate_token_bitmask",
    "apply_token_bitmask_inplace",
    "batch_fill_next_token_bitmask",
    "bitmask_to_ids",
    "generate",
    "load_default_model",
    "__version__",
]
