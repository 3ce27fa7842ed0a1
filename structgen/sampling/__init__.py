"""Sampling under a grammar: adaptive weighted rejection sampling (AWRS) and sequential Monte Carlo.

* :class:`AWRS` samples one token exactly from the model's distribution masked to what the
  grammar allows, checking only the tokens it draws, and returns an unbiased estimate of the
  allowed mass (Lipkin et al., 2025, arXiv:2504.05410). :class:`MaskSampler` is the full-mask
  baseline with the same interface.
* :class:`SMC` runs particles (matcher forks plus model contexts) extended by either sampler and
  targets the model's distribution conditioned on the whole output being valid; it returns an
  :class:`SMCResult` (weighted samples, ESS history, log marginal likelihood, posterior).
* Models implement :class:`LanguageModel` (``next_token_logprobs(contexts)``):
  :class:`TabularLM` for tests, :class:`~structgen.sampling.hf.HFCausalLM` for transformers
  (imported lazily; needs torch).
"""

from .awrs import AWRS, ESTIMATORS, ORDERS, MaskSampler, SamplerStats, TokenSample
from .constraints import MatcherConstraint, TokenConstraint
from .models import LanguageModel, TabularLM, log_softmax
from .smc import SMC, Critic, Particle, SMCResult, effective_sample_size, resample

__all__ = [
    "AWRS",
    "Critic",
    "ESTIMATORS",
    "LanguageModel",
    "MaskSampler",
    "MatcherConstraint",
    "ORDERS",
    "Particle",
    "SMC",
    "SMCResult",
    "SamplerStats",
    "TabularLM",
    "TokenConstraint",
    "TokenSample",
    "effective_sample_size",
    "log_softmax",
    "resample",
]


def __getattr__(name: str):
    # ``structgen.sampling.HFCausalLM`` works, but stays out of __all__ so that neither
    # ``import structgen.sampling`` nor ``import *`` imports torch
    if name == "HFCausalLM":
        from .hf import HFCausalLM

        return HFCausalLM
    raise AttributeError(f"module 'structgen.sampling' has no attribute {name!r}")
