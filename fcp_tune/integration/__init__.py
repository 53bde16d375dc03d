"""FCP in your own training loop (public API): see ``docs/INTEGRATION.md``.

- :class:`FCP`: from a policy and the world, per global batch: the plan (planned ahead on a
  background thread, checked identical on every rank), the process groups it needs (created
  lazily, within the policy's communicator cap) and this rank's :class:`WaveInputs` (zigzag
  token ids, per-sequence positions, globally shifted labels, ``cu_seqlens``, the group for
  attention, the loss scale);
- :func:`wave_loss`, :func:`sync_gradients`, :func:`reduce_loss`: the exact per-token mean over
  the global batch and the DDP-style gradient sum;
- :mod:`fcp_tune.integration.hf`: fcp-tune's attention registered with Hugging Face
  ``transformers`` (optional extra ``hf``);
- pure helpers (:func:`shard_sequences`, :func:`shift_labels`) and the pieces the bundled
  executor shares (:class:`GroupPool`, :class:`PlanAhead`, :func:`agree_on_plan`).
"""

from fcp_tune.attention.comm import WORLD
from fcp_tune.integration.agree import agree_on_plan
from fcp_tune.integration.loss import reduce_loss, sync_gradients, wave_loss
from fcp_tune.integration.planahead import PlanAhead, Planned, plan_inline
from fcp_tune.integration.pool import GroupPool
from fcp_tune.integration.session import FCP, StepInputs, WaveInputs, communicator_cap, current_wave
from fcp_tune.integration.shards import IGNORE_INDEX, Shard, shard_sequences, shift_labels, target_count

__all__ = [
    "FCP", "IGNORE_INDEX", "WORLD", "GroupPool", "PlanAhead", "Planned", "Shard", "StepInputs", "WaveInputs",
    "agree_on_plan", "communicator_cap", "current_wave", "plan_inline", "reduce_loss", "shard_sequences",
    "shift_labels", "sync_gradients", "target_count", "wave_loss",
]
