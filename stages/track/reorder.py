"""Puts messages back in frame order, per job.

Several detect workers finish frames out of order; the track stage needs them
in order. ``add`` files an item under (job, index); ``ready`` hands out the
items whose turn has come. Duplicates (a frame already handed out or already
waiting) are refused, which makes at-least-once delivery upstream safe.
"""
from __future__ import annotations

from typing import Any, Iterator


class ReorderOverflow(Exception):
    pass


class ReorderBuffer:
    def __init__(self, max_pending: int = 256):
        self.max_pending = max_pending  # per job: bounds memory if a frame never comes
        self._next: dict[str, int] = {}
        self._pending: dict[str, dict[int, Any]] = {}

    def add(self, job: str, index: int, item: Any) -> bool:
        """File ``item``; False if it is a duplicate. Raises ReorderOverflow when full."""
        pending = self._pending.setdefault(job, {})
        if index < self._next.get(job, 0) or index in pending:
            return False
        if len(pending) >= self.max_pending:
            raise ReorderOverflow(f"job {job}: {len(pending)} frames wait for frame {self._next.get(job, 0)}")
        pending[index] = item
        return True

    def ready(self, job: str) -> Iterator[tuple[int, Any]]:
        """Items of ``job`` that are next in order, in order."""
        pending = self._pending.get(job, {})
        index = self._next.get(job, 0)
        while index in pending:
            yield index, pending.pop(index)
            index += 1
            self._next[job] = index

    def peek(self, job: str, index: int) -> Any:
        """The item waiting under (job, index), or None; it stays there."""
        return self._pending.get(job, {}).get(index)

    def waiting_items(self, job: str) -> list[Any]:
        return [self._pending[job][i] for i in sorted(self._pending.get(job, {}))]

    def last_waiting(self, job: str) -> int | None:
        """The highest index waiting (a frame before it may be missing), or None."""
        return max(self._pending.get(job) or [None], key=lambda i: -1 if i is None else i)

    def next_index(self, job: str) -> int:
        return self._next.get(job, 0)

    def waiting(self, job: str) -> int:
        return len(self._pending.get(job, {}))

    def forget(self, job: str) -> None:
        self._next.pop(job, None)
        self._pending.pop(job, None)
