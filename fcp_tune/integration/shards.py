"""One rank's packed inputs for one group of a plan: pure functions, no process group.

A group of ``d`` ranks processes sequences ``seq_ids`` of the global batch; each sequence is
cut into ``2d`` chunks and rank ``i`` holds chunks ``i`` and ``2d-1-i`` (zigzag,
:mod:`fcp_tune.schemes.layout`). For its tokens a rank needs:

- the token ids, in that zigzag order (a sequence's early chunk, then its late chunk);
- each token's position inside its own sequence, so RoPE restarts at every document and is
  right in every chunk (a late chunk starts deep inside its sequence);
- each token's *target*, the next token of the same sequence, taken on the global sequence
  before sharding: the target of a chunk's last token is the first token of the next chunk,
  which usually lives on another rank. Shifting per shard instead is the classic bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from fcp_tune.schemes.layout import rank_spans

IGNORE_INDEX = -100  # targets never predicted (each sequence's last token, masked labels)


def cumulative(lengths: Sequence[int]) -> tuple[int, ...]:
    """``cu_seqlens`` of a list of lengths."""
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + int(n))
    return tuple(cu)


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Targets of one whole sequence: ``labels[t + 1]`` at ``t``, :data:`IGNORE_INDEX` at the end.

    ``labels`` follows the Hugging Face convention (aligned with the input ids, ``-100`` for
    tokens not to learn), so ``shift_labels(input_ids)`` is plain next-token prediction.
    """
    if labels.numel() == 0:
        return labels.clone()
    return torch.cat([labels[1:], labels.new_full((1,), IGNORE_INDEX)])


def target_count(targets: Sequence[torch.Tensor]) -> int:
    """Predicted tokens of a batch of (shifted) targets: those not :data:`IGNORE_INDEX`."""
    if isinstance(targets, Targets):
        return targets.count()
    return int(sum(int((t != IGNORE_INDEX).sum()) for t in targets))


@dataclass(frozen=True, eq=False)
class Shard:
    """One rank's share of a group's sequences, packed.

    ``cu_seqlens`` is the group's *global* cumulative lengths (what attention needs);
    ``local_cu_seqlens`` delimits each sequence's share (early + late chunk) in the local
    tensors. ``n_targets`` counts the local targets that are not ignored.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    cu_seqlens: tuple[int, ...]
    local_cu_seqlens: tuple[int, ...]
    n_targets: int


def shard_sequences(
    tokens: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    seq_ids: Sequence[int],
    degree: int,
    rank: int,
) -> Shard:
    """Rank ``rank``'s share of sequences ``seq_ids`` for a group of ``degree`` ranks.

    Args:
        tokens: every sequence of the global batch (1-D integer tensors).
        targets: their shifted targets (:func:`shift_labels`), same lengths.
        seq_ids: the group's sequences (indices into ``tokens``), in the group's order.
        degree: the group size; ``rank``: this rank's index inside the group.
    """
    if not 0 <= rank < degree:
        raise ValueError(f"rank must be in [0, {degree}), got {rank}")
    lengths = [int(tokens[i].numel()) for i in seq_ids]
    cu = cumulative(lengths)
    if not lengths:
        e = torch.empty(0, dtype=torch.long)
        return Shard(e, e, e, cu, (0,), 0)
    sp = rank_spans(np.asarray(lengths, dtype=np.int64), degree)
    spans = np.stack([sp.e0[:, rank], sp.e1[:, rank], sp.l0[:, rank], sp.l1[:, rank]], axis=1).tolist()
    ids, pos, tgt = [], [], []
    for i, (e0, e1, l0, l1) in zip(seq_ids, spans):  # only this rank's chunks: O(local tokens)
        for a, b in ((e0, e1), (l0, l1)):
            if b > a:
                ids.append(tokens[i][a:b])
                tgt.append(targets[i][a:b])
                pos.append(torch.arange(a, b))
    mine = torch.cat(tgt).long() if tgt else torch.empty(0, dtype=torch.long)
    return Shard(
        input_ids=torch.cat(ids).long() if ids else mine,
        position_ids=torch.cat(pos) if pos else mine,
        labels=mine,
        cu_seqlens=cu,
        local_cu_seqlens=cumulative(int(n) for n in sp.tokens[:, rank]),
        n_targets=int((mine != IGNORE_INDEX).sum()),
    )


def as_sequences(sequences: Sequence, name: str = "sequences") -> list[torch.Tensor]:
    """Lists or tensors of token ids -> 1-D long tensors on the CPU (checked)."""
    out = []
    for i, s in enumerate(sequences):
        t = s.detach().cpu() if isinstance(s, torch.Tensor) else torch.tensor(list(s), dtype=torch.long)
        if t.dim() != 1:
            raise ValueError(f"{name}[{i}] must be 1-D, got shape {tuple(t.shape)}")
        if t.is_floating_point():
            raise ValueError(f"{name}[{i}] must hold integer ids, got {t.dtype}")
        out.append(t.long())
    return out


class Targets:
    """Shifted targets of a batch, made per sequence when first asked for (a rank needs few)."""

    def __init__(self, sources: Sequence[torch.Tensor]) -> None:
        self._sources = sources
        self._made: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._sources)

    def __getitem__(self, i: int) -> torch.Tensor:
        if i not in self._made:
            self._made[i] = shift_labels(self._sources[i])
        return self._made[i]

    def count(self) -> int:
        """Predicted tokens of the whole batch, without shifting every sequence."""
        return int(sum(int((s[1:] != IGNORE_INDEX).sum()) for s in self._sources))


def global_targets(tokens: Sequence[torch.Tensor], labels: Optional[Sequence] = None) -> Targets:
    """Shifted targets of every sequence (from ``labels``, default the tokens themselves)."""
    if labels is None:
        return Targets(tokens)
    lab = as_sequences(labels, "labels")
    if len(lab) != len(tokens):
        raise ValueError(f"labels has {len(lab)} sequences, the batch {len(tokens)}")
    for i, (t, l) in enumerate(zip(tokens, lab)):
        if l.numel() != t.numel():
            raise ValueError(f"labels[{i}] has {l.numel()} entries, sequence {i} has {t.numel()} tokens")
    return Targets(lab)
