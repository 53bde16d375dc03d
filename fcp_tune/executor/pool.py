"""Process groups for the contiguous rank ranges a policy can use: created once, cached.

Group creation is a collective over the whole world, so every rank creates every group
in one canonical order (by size, then start) and without local synchronisation (which
hangs with overlapping groups on gloo). Plans then only look groups up; nothing is
created while training, so changing groups between steps cannot hang.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch.distributed as dist


class GroupPool:
    """Maps ``(start, size)`` rank ranges to process groups."""

    def __init__(self, ranges: Iterable[tuple[int, int]], world_size: int) -> None:
        self.world_size = world_size
        self._groups: dict[tuple[int, int], Optional[dist.ProcessGroup]] = {}
        for start, size in sorted(set(ranges), key=lambda r: (r[1], r[0])):
            if start < 0 or size < 1 or start + size > world_size:
                raise ValueError(f"rank range (start={start}, size={size}) is outside a world of {world_size}")
            self._groups[(start, size)] = dist.new_group(list(range(start, start + size)))

    def get(self, start: int, size: int) -> dist.ProcessGroup:
        try:
            group = self._groups[(start, size)]
        except KeyError:
            raise ValueError(f"no process group was created for ranks [{start}, {start + size})") from None
        assert group is not None
        return group

    @property
    def communicators(self) -> int:
        """Groups that can communicate (size > 1): the ones that cost memory on GPUs."""
        return sum(1 for (_, size) in self._groups if size > 1)

    def __len__(self) -> int:
        return len(self._groups)
