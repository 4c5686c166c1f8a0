"""A child process (``launch.py``, a stage) started by a bench or a test, its stderr spooled to a temporary file.

Not a pipe read at the end: the stages inherit the launcher's stderr, and in a chatty run (a detector that
fails each frame logs a line a batch) the 64 KiB of a pipe nobody reads fill up; then every process writing
to it blocks and the whole pipeline stalls, publishing nothing.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time


class Spooled(subprocess.Popen):
    """``subprocess.Popen`` with stderr in an unnamed temporary file; ``communicate`` returns it as a pipe would."""

    def __init__(self, args, **kwargs):
        self.spool = tempfile.TemporaryFile()
        super().__init__(args, stderr=self.spool, **kwargs)

    def said(self) -> str:
        """Everything written to stderr so far (read at its own offset: the writers' file position stays)."""
        fd = self.spool.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def communicate(self, input=None, timeout=None):
        out, _ = super().communicate(input, timeout)
        return out, self.said()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        """The first match of ``pattern`` in stderr, once written; AssertionError with stderr if the process
        exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.said())):
            if self.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on stderr (exit {self.returncode}); it ends:\n"
                                     f"{self.said()[-4000:]}")
            time.sleep(0.05)
        return found

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self.spool.close()
