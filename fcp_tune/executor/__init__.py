"""The bundled lightweight FCP executor: a small decoder trained with per-batch plans.

- :mod:`.model`: Llama-style decoder (RMSNorm, RoPE, GQA via ``cp_attention``, SwiGLU);
- :mod:`.data`: synthetic tokens;
- :mod:`.step`: one training step of one policy on one rank, through the public
  integration API (:mod:`fcp_tune.integration`: plans, groups, shards, loss, gradient sum);
- :mod:`.runner`: interleaved multi-policy runs, local or under torchrun, and their summary.
"""

from fcp_tune.executor.runner import RunConfig, RunReport, run_training

__all__ = ["RunConfig", "RunReport", "run_training"]
