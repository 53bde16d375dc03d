"""The bundled lightweight FCP executor: a small decoder trained with per-batch plans.

- :mod:`.model`: Llama-style decoder (RMSNorm, RoPE, GQA via ``cp_attention``, SwiGLU);
- :mod:`.data`: synthetic tokens and each rank's share of a group's sequences;
- :mod:`.pool`: process groups for the plans' rank ranges, created lazily the first time a plan
  needs a range (a collective: every rank creates them in one canonical order, on the main thread);
- :mod:`.planahead`: plans the next batch on a background thread while the current one trains;
- :mod:`.step`: one training step of one policy on one rank;
- :mod:`.runner`: interleaved multi-policy runs, local or under torchrun, and their summary.
"""

from fcp_tune.executor.runner import RunConfig, RunReport, run_training
from fcp_tune.executor.step import FaultSpec

__all__ = ["FaultSpec", "RunConfig", "RunReport", "run_training"]
