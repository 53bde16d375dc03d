"""Process groups for rank ranges, created lazily the first time a plan needs them.

Group creation is a collective over the whole world, so before a step runs, every rank
creates the groups of that step's plan it has not created yet, in one canonical order (by
size, then start) and without local synchronisation (which hangs with overlapping groups
on gloo). Plans are identical on every rank (the digest check runs first), so every rank
makes the same calls in the same order. Creation happens on the main thread only; the
planner thread never touches groups.

``torch.distributed.split_group`` would split from the default communicator, but it needs
a default group bound to a device; on gloo (and under :func:`fcp_tune.launch.init_from_env`,
which binds none) it refuses ("No device associated with the default pg"), so groups are
made with ``new_group``. The range ``[0, N)`` reuses the world group (no new communicator),
and a one-rank range is no communicator at all: :meth:`GroupPool.get` returns ``None`` for it,
which :func:`fcp_tune.attention.cp_attention` runs locally without communicating.
"""

from __future__ import annotations

import threading
from typing import Iterable, Optional

import torch.distributed as dist


class GroupPool:
    """Maps ``(start, size)`` rank ranges to process groups, created on first use.

    ``max_per_rank`` (``None``: no limit) bounds the communicating groups (size >= 2) any one
    rank belongs to; the planner's vocabulary guarantees it, and exceeding it raises.
    ``ranges`` are created up front (a warm-up; ``()`` for none).
    """

    def __init__(self, ranges: Iterable[tuple[int, int]], world_size: int,
                 max_per_rank: Optional[int] = None) -> None:
        self.world_size = world_size
        self.max_per_rank = max_per_rank
        self._groups: dict[tuple[int, int], Optional[dist.ProcessGroup]] = {}
        self._members = [0] * world_size  # communicating groups each rank belongs to
        self.created: list[tuple[int, int, int]] = []  # (step, start, size) in creation order
        self.ensure(ranges, step=-1)

    def ensure(self, ranges: Iterable[tuple[int, int]], step: int = -1) -> int:
        """Create the groups among ``ranges`` not created yet (collective); return how many."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("process groups must be created on the main thread")
        missing = sorted({r for r in ranges if r not in self._groups}, key=lambda r: (r[1], r[0]))
        for start, size in missing:
            if start < 0 or size < 1 or start + size > self.world_size:
                raise ValueError(f"rank range (start={start}, size={size}) is outside a world of {self.world_size}")
            if size > 1:
                for r in range(start, start + size):
                    self._members[r] += 1
                if self.max_per_rank is not None and max(self._members[start : start + size]) > self.max_per_rank:
                    raise RuntimeError(
                        f"ranks [{start}, {start + size}) would belong to more than {self.max_per_rank} "
                        "communicators (max_communicators)"
                    )
            if size == 1:
                group = None  # computes alone: no communicator, nothing to create collectively
            elif (start, size) == (0, self.world_size):
                group = dist.group.WORLD
            else:
                group = dist.new_group(list(range(start, start + size)))
            self._groups[(start, size)] = group
            self.created.append((step, start, size))
        return len(missing)

    def get(self, start: int, size: int) -> Optional[dist.ProcessGroup]:
        """The group of ranks ``[start, start + size)``; ``None`` (no communication) for one rank."""
        try:
            return self._groups[(start, size)]
        except KeyError:
            raise ValueError(f"no process group was created for ranks [{start}, {start + size})") from None

    @property
    def communicators(self) -> int:
        """Groups that can communicate (size > 1): the ones that cost memory on GPUs."""
        return sum(1 for (_, size) in self._groups if size > 1)

    @property
    def per_rank(self) -> int:
        """The most communicating groups any one rank belongs to."""
        return max(self._members, default=0)

    def __len__(self) -> int:
        return len(self._groups)
