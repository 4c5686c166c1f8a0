"""Result files appear whole or not at all: each is written under a temporary name in its own folder and
renamed into place once complete (a rename within one file system is atomic), so a backend that sees
the file, or finds it in ``job_end.outputs``, never reads half of it.

The temporary name is hidden (``.<name>.<random>.tmp<suffix>``): globs such as ``*.mp4`` skip it, and
it keeps the suffix for writers that choose a format by it.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0o022)  # read once, at import (one thread), and put back
os.umask(_UMASK)


def temporary_beside(path: Path) -> Path:
    """A new, empty, hidden file in ``path``'s folder to write ``path``'s content to."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    return Path(temporary)


def move_into_place(temporary: Path, path: Path) -> Path:
    """Rename a complete ``temporary`` to ``path``, readable as open() would have made it (mkstemp's 0600 would
    hide it from a backend running as another user)."""
    os.chmod(temporary, 0o666 & ~_UMASK)
    os.replace(temporary, path)
    return path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to: renamed to ``path`` when the block ends, removed
    (leaving whatever was at ``path`` before) when it raises."""
    path = Path(path)
    temporary = temporary_beside(path)
    try:
        yield temporary
        move_into_place(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file; returns the path."""
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)
