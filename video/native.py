"""Keeping native libraries' stderr chatter out of the service's own logs."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what C/C++ code writes to fd 2 meanwhile (set-up notices, probing failures).

    Python's own ``sys.stderr`` writes go to the same fd, so keep the block short.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
