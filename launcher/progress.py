"""The progress line of a one-off run (``python launch.py VIDEO``) on a terminal."""
from __future__ import annotations

import sys
import time

from launcher.pipeline import JobRecord


class ProgressBar:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, total: int | None):
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()

    def update(self, record: JobRecord) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        total = self.total or 0
        filled = int(30 * record.frames / total) if total else 0
        bar = f"[{'#' * filled}{'.' * (30 - filled)}] " if total else ""
        sys.stderr.write(f"\r{bar}{record.frames}/{total or '?'} frames  {record.frames / elapsed:5.1f} fps  "
                         f"person in {record.with_person}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
