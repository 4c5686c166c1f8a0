"""Where the track stage's published messages go, each behind the same small interface (``Sink``).

In publishing order: the ``--out`` file (first, so that it is complete and in place when its job's
job_end goes anywhere else), the launcher's status link, the job log (before the socket: whoever sees
a message live can already replay it), the results socket, the recording (``--record``), and the
per-job files (``outputs.FILES``), written once the job's frames are out, on a thread of their own,
before its job_end is published.
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Protocol

import zmq

from bus import codec, messages, sockets
from bus.joblog import JobLogs
from bus.log import MessageLog
from bus.logline import log_line
from bus.metrics import StageMetrics
from outputs import asked_for, write_files
from outputs.atomic import move_into_place, temporary_beside


class Sink(Protocol):
    def open(self, job: str) -> None:
        """The job begins publishing."""

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        """One public message of the job; ``counts``: frames published so far, how many with a person,
        how many with detection failed."""

    def close(self, job: str, start: dict | None, end: dict) -> None:
        """The job has published its job_end; ``start`` and ``end`` are decode's job_start (None if it never
        came) and job_end."""


class StatusSink:
    """The launcher's progress of each job: a ``progress`` per frame, and the job_end first of all sinks,
    so the job is done for the launcher when a backend sees it."""

    def __init__(self, status: zmq.Socket | None):
        self.status = status

    def open(self, job: str) -> None:
        pass

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        if self.status is None:
            return
        if message["type"] == "frame":
            sockets.send(self.status, messages.progress(job, *counts))
        elif message["type"] == "job_end":
            sockets.send(self.status, message)

    def close(self, job: str, start: dict | None, end: dict) -> None:
        pass


class JobLogSink:
    """Each job's log on disk (``bus.joblog``): the history link replays it, the files are made from it."""

    def __init__(self, job_logs: JobLogs):
        self.job_logs = job_logs
        self.open_logs: dict[str, MessageLog] = {}

    def open(self, job: str) -> None:
        self.open_logs[job] = self.job_logs.open(job)

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        self.open_logs[job].write(message)

    def close(self, job: str, start: dict | None, end: dict) -> None:
        self.open_logs.pop(job).close()


class ResultsSink:
    """The results socket (XPUB) that backends subscribe to."""

    def __init__(self, results: zmq.Socket, metrics: StageMetrics):
        self.results, self.metrics = results, metrics

    def open(self, job: str) -> None:
        pass

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        sockets.send(self.results, message)
        self.metrics.sent(message)

    def close(self, job: str, start: dict | None, end: dict) -> None:
        pass


class Recording:
    """``--record DIR``: every stream of each job in DIR/<job>/<stream>.log, so one stage can be replayed alone.
    The track stage records what it takes (events, detections) as they come and, as a sink, what it publishes."""

    STREAMS = ("events", "detections", "results")

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.jobs: dict[str, dict[str, MessageLog]] = {}

    def record(self, job: str, stream: str, message: dict) -> None:
        if self.folder is None:
            return
        if job not in self.jobs:
            self.jobs[job] = {name: MessageLog(self.folder / job / f"{name}.log") for name in self.STREAMS}
        self.jobs[job][stream].write(message)

    def open(self, job: str) -> None:
        pass

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        self.record(job, "results", message)

    def close(self, job: str, start: dict | None, end: dict) -> None:
        for log in self.jobs.pop(job, {}).values():
            log.close()


class JsonLinesSink:
    """``--out DIR``: each job's messages as JSON lines in DIR/<job>.jsonl, as they are published, under a
    temporary name until the job_end is written: the file appears in place complete. Its job_end lists it
    (``out``) among the job's outputs; if the rename fails, the job_end says so instead (``output_errors``)
    before any other sink sees it."""

    def __init__(self, folder: Path | None, log):
        self.folder, self.log = folder, log
        self.files: dict[str, tuple[Any, Path]] = {}

    def path(self, job: str) -> Path | None:
        return None if self.folder is None else (self.folder / f"{job}.jsonl").absolute()

    def open(self, job: str) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = temporary_beside(self.path(job))
            self.files[job] = (open(temporary, "w"), temporary)

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        if job not in self.files:
            return
        self.files[job][0].write(json.dumps(codec.to_json_compatible(message)) + "\n")
        if message["type"] == "job_end":
            file, temporary = self.files.pop(job)
            file.close()
            try:
                move_into_place(temporary, self.path(job))
            except OSError as exc:
                log_line(self.log, logging.ERROR, "output_failed", job=job, output="out", error=exc)
                message.get("outputs", {}).pop("out", None)
                message.setdefault("output_errors", {})["out"] = f"{type(exc).__name__}: {exc}"

    def close(self, job: str, start: dict | None, end: dict) -> None:
        if job in self.files:  # never ended (the stage stopped): no file in place
            file, temporary = self.files.pop(job)
            file.close()
            temporary.unlink(missing_ok=True)


class FilesSink:
    """The per-job files asked for (``outputs.FILES``), made from the job's published messages once its frames
    are out, before its job_end is published (``submit``).

    The messages are kept here, not read back from the job log: another pipeline sharing the log
    folder may prune it meanwhile. The files can take minutes (an overlay decodes the whole video
    again): written on a thread of their own, one job after another, so that the stage goes on
    publishing, and heart-beating, meanwhile.
    """

    def __init__(self, settings: Mapping[str, Any], log):
        self.settings, self.log = settings, log
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="outputs") if asked_for(settings) else None
        self.kept: dict[str, list[dict]] = {}

    def open(self, job: str) -> None:
        if self.writer is not None:
            self.kept[job] = []

    def write(self, job: str, message: dict, counts: tuple[int, int, int]) -> None:
        if job in self.kept:
            self.kept[job].append(message)

    def close(self, job: str, start: dict | None, end: dict) -> None:
        self.kept.pop(job, None)

    def submit(self, job: str, start: dict | None, end: dict) -> Future | None:
        """Start writing the files of a job whose job_end will be ``end``; the future gives ``write_files``'
        (outputs, output_errors). None when no files are asked for."""
        if job not in self.kept:
            return None
        return self.writer.submit(write_files, self.settings, job, start, end, self.kept.pop(job) + [end], self.log)

    def shutdown(self) -> None:
        """Wait for the files still being written."""
        if self.writer is not None:
            self.writer.shutdown()
