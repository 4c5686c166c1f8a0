"""Result files over the control socket, the mirror of ``launcher.uploads``: a backend on another machine reads
a finished job's files (those its ``job_end`` lists in ``outputs``) in chunks.

    output_chunk  {job, output, index?, offset, max_bytes?}  -> {data, size, done, name}

A file is named by the job and the output option's name (``app_json``, ``overlay``, ``out``, ...; ``index``
picks one file of a per-track output such as ``gltf``), never by a path, and only once the job's ``job_end``
has come: every file it lists is complete then (``outputs.atomic``). The launcher notes each file as the job
left it (device, inode, size, modification time) when that ``job_end`` arrives, and refuses one that has been
replaced or changed since (a later job writing the same ``--overlay FILE.mp4``, say): it serves the job's own
bytes or none. Files stay fetchable for as long as this launcher runs and they stay where they were written:
posebus never removes result files, and a restarted launcher knows none of the jobs before it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from launcher.uploads import CHUNK_BYTES


class FetchError(ValueError):
    """A request for a result file that cannot be honoured; the message is the control reply's ``error``."""


@dataclass(frozen=True)
class ResultFile:
    """A file as its job left it."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> ResultFile | str:
        """The file at ``path`` now, or why it cannot be read."""
        try:
            found = os.stat(path)
        except OSError as exc:
            return f"{path}: {exc.strerror}"
        return cls(path, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)

    def same_as(self, found: os.stat_result) -> bool:
        return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns) == (
            self.device, self.inode, self.size, self.mtime_ns)


@dataclass(frozen=True)
class EndedJob:
    listed: dict[str, str | list[str]]  # job_end.outputs: output name -> its path(s)
    outputs: dict[str, ResultFile | str | list[ResultFile | str]]  # output name -> its file(s), or why unreadable
    errors: dict[str, str]  # output name -> why the track stage could not write it (job_end.output_errors)


class ResultFiles:
    """The result files of the jobs that have ended, by job id, as their ``job_end`` listed them."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES):
        self.chunk_bytes = chunk_bytes
        self.ended: dict[str, EndedJob] = {}

    def note(self, arrived: list[dict]) -> None:
        """Take the ``job_end`` messages among the launcher's status messages: their files, as they are now."""
        for message in arrived:
            if message["type"] == "job_end":
                listed = dict(message.get("outputs", {}))
                outputs = {name: [ResultFile.of(p) for p in paths] if isinstance(paths, list) else ResultFile.of(paths)
                           for name, paths in listed.items()}
                self.ended[message["job"]] = EndedJob(listed, outputs, dict(message.get("output_errors", {})))

    def listing(self, job: str) -> dict:
        """``outputs`` and ``output_errors`` as the job's ``job_end`` gave them; nothing before it has ended."""
        ended = self.ended.get(job)
        return {} if ended is None else {"outputs": ended.listed, "output_errors": ended.errors}

    def chunk(self, job: str, output: str, index: int | None, offset: int, max_bytes: int | None = None) -> dict:
        """Up to ``max_bytes`` (at most ``chunk_bytes``) of the file from ``offset``: ``data``, ``size`` (the
        file's), ``done`` (the chunk reaches its end) and ``name`` (the file's name, without its folder)."""
        listed = self._file(job, output, index)
        if isinstance(listed, str):
            raise FetchError(f"job {job}'s {output} file cannot be read: {listed}")
        if offset > listed.size:
            raise FetchError(f"offset {offset} is past the end of job {job}'s {output} file ({listed.size} bytes)")
        try:
            with open(listed.path, "rb") as file:
                if not listed.same_as(os.fstat(file.fileno())):
                    raise FetchError(f"job {job}'s {output} file {listed.path} has changed since the job ended "
                                     "(written again by a later job?): it is no longer this job's")
                file.seek(offset)
                data = file.read(min(max_bytes or self.chunk_bytes, self.chunk_bytes))
        except OSError as exc:
            raise FetchError(f"job {job}'s {output} file {listed.path} cannot be read: {exc.strerror}") from None
        return {"data": data, "size": listed.size, "done": offset + len(data) == listed.size,
                "name": Path(listed.path).name}

    def _file(self, job: str, output: str, index: int | None) -> ResultFile | str:
        ended = self.ended.get(job)
        if ended is None:  # the launcher ended it (a stage died, or it was cancelled before it ran)
            raise FetchError(f"job {job} ended without result files")
        if output not in ended.outputs:
            if output in ended.errors:
                raise FetchError(f"job {job}'s {output} file was not written: {ended.errors[output]}")
            raise FetchError(f"job {job} has no output {output!r} (its job_end lists "
                             f"{', '.join(sorted(ended.outputs)) or 'none'})")
        listed = ended.outputs[output]
        if not isinstance(listed, list):
            if index is not None:
                raise FetchError(f"job {job}'s {output} is one file: ask without an index")
            return listed
        if not listed:
            raise FetchError(f"job {job}'s {output} is no file at all")
        if index is None or index >= len(listed):
            given = "no index" if index is None else f"index {index}"
            raise FetchError(f"job {job}'s {output} is {len(listed)} file{'s' * (len(listed) > 1)} (one per track): "
                             f"{given}, give an index from 0 to {len(listed) - 1}")
        return listed[index]
