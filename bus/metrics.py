"""What a stage counts about itself, and the ``metrics`` message it publishes every interval.

Bookkeeping: a stage makes one :class:`StageMetrics`, tells it about the
messages it takes in (``received``) and sends on (``sent``), and calls
``publish()`` from its loop, which sends a snapshot on ``out`` when one is due
(the only socket this module touches; ``snapshot()`` alone is pure). The
launcher takes the snapshots as heartbeats, so a loop publishes while it waits too.
Frame latencies come from the ``timestamps`` the frame messages carry, so
every stage measures the same clock readings a backend sees.
docs/metrics.md describes the message.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections import deque

import numpy as np
import zmq

from bus import messages, sockets

DEFAULT_INTERVAL_S = 1.0
LATENCY_SAMPLES = 4096  # per interval: bounds memory at any frame rate
JOBS_REPORTED = 16  # the most recent jobs listed in ``jobs``
FRAME_TYPES = ("image", "detections", "frame")  # each stage's one output message per frame

# For each stage, the latencies it reports: name -> (from, to) keys of its output's timestamps.
LATENCIES: dict[str, dict[str, tuple[str, str]]] = {
    "detect": {"stage": ("decoded", "detected")},
    "track": {"stage": ("detected", "published"), "end_to_end": ("decoded", "published")},
}


def percentile(samples, q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation); None without samples."""
    return float(np.percentile(samples, q)) if len(samples) else None


class LatencyWindow:
    """Latencies (ms) seen since the last snapshot, the newest ``size`` of them."""

    def __init__(self, size: int = LATENCY_SAMPLES):
        self.samples: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def take(self) -> dict:
        """p50, p95 and sample count of the window, which then starts afresh."""
        summary = {"p50": percentile(self.samples, 50), "p95": percentile(self.samples, 95),
                   "samples": len(self.samples)}
        self.samples.clear()
        return summary


class ErrorCount(logging.Handler):
    """Counts the error records a logger (and its children) emits."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def gpu_memory_bytes() -> int | None:
    """Peak CUDA memory torch allocated in this process; None where torch never started CUDA.

    Looks only at an already imported torch: importing it here would cost a
    BlazePose worker seconds and hundreds of MB for nothing.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


class StageMetrics:
    """One stage process's counters, latency windows and publishing schedule.

    ``drops`` is the stage's :class:`bus.sockets.Counter` of malformed messages.
    The stage keeps ``queue`` (how much work waits in it) up to date itself.
    ``clock`` (monotonic) paces snapshots and measures fps; ``wall`` stamps them.
    ``out`` is the socket ``publish`` sends on (stages.runtime.start_metrics sets it).
    """

    def __init__(self, stage: str, worker: str, interval: float = DEFAULT_INTERVAL_S, drops=None,
                 clock=time.monotonic, wall=time.time):
        self.stage, self.worker, self.interval = stage, worker, interval
        self.drops = drops
        self.clock, self.wall = clock, wall
        self.out: zmq.Socket | None = None
        self.messages_in = self.messages_out = self.frames = self.retries = self.queue = 0
        self.errors = ErrorCount()
        self.latencies = {name: LatencyWindow() for name in LATENCIES.get(stage, {})}
        self.jobs: dict[str, int] = {}  # job -> frames this stage finished, newest last
        # The same latencies per job, for the jobs in ``jobs``: side by side, a live stream's own
        # latency is what its backend watches, and the stage's mixes it with the file jobs beside it.
        self.job_latencies: dict[str, dict[str, LatencyWindow]] = {}
        self.skipped: dict[str, int] = {}  # detect: people its detector left out, by reason (the detector's count)
        self._last_snapshot = clock()
        self._frames_at_last_snapshot = 0

    def count_errors_of(self, logger: logging.Logger) -> None:
        """Count every error ``logger`` and its children log as one of this stage's errors."""
        logger.addHandler(self.errors)

    def received(self, count: int = 1) -> None:
        self.messages_in += count

    def sent(self, message: dict) -> None:
        """Count a message sent on; a frame's output also counts toward fps, its job, and latencies."""
        self.messages_out += 1
        if message["type"] not in FRAME_TYPES:
            return
        self.frames += 1
        job = message["job"]
        self.jobs[job] = self.jobs.pop(job, 0) + 1  # re-inserted: the dict stays in recency order
        if len(self.jobs) > JOBS_REPORTED:
            self.job_latencies.pop(next(iter(self.jobs)), None)
            del self.jobs[next(iter(self.jobs))]
        stamps = message.get("timestamps", {})
        measured = LATENCIES.get(self.stage, {})
        if not measured:
            return
        job_windows = self.job_latencies.get(job)
        if job_windows is None:  # made once per job, not per frame: a window holds a 4096-sample deque
            job_windows = self.job_latencies[job] = {name: LatencyWindow() for name in measured}
        for name, (start, end) in measured.items():
            if start in stamps and end in stamps:
                ms = (stamps[end] - stamps[start]) * 1000.0
                self.latencies[name].add(ms)
                job_windows[name].add(ms)

    def due(self) -> bool:
        return self.clock() - self._last_snapshot >= self.interval

    def timeout_ms(self) -> int:
        """How long a loop may wait for input before the next snapshot is due."""
        return max(0, int((self._last_snapshot + self.interval - self.clock()) * 1000))

    def snapshot(self) -> dict:
        """The ``metrics`` message for the interval since the last snapshot, which it ends."""
        now = self.clock()
        elapsed = max(now - self._last_snapshot, 1e-9)
        fps = (self.frames - self._frames_at_last_snapshot) / elapsed
        self._last_snapshot, self._frames_at_last_snapshot = now, self.frames
        job_latency = {job: {name: window.take() for name, window in windows.items()}
                       for job, windows in self.job_latencies.items() if any(w.samples for w in windows.values())}
        return messages.metrics(
            stage=self.stage, worker=self.worker, host=socket.gethostname(), pid=os.getpid(), time=self.wall(),
            interval=elapsed, messages_in=self.messages_in, messages_out=self.messages_out, frames=self.frames,
            fps=fps, queue=int(self.queue), drops=self.drops.dropped if self.drops else 0, retries=self.retries,
            errors=self.errors.count, latency_ms={name: w.take() for name, w in self.latencies.items()},
            jobs=dict(self.jobs), gpu_memory=gpu_memory_bytes(),
            **({"job_latency_ms": job_latency} if job_latency else {}),
            **({"skipped": dict(self.skipped)} if self.skipped else {}))

    def publish(self) -> None:
        """Send a snapshot on ``out`` if one is due; never blocks (a PUB drops what it cannot send)."""
        if self.due():
            sockets.send(self.out, self.snapshot(), zmq.NOBLOCK)

    def wait_writable(self, sock: zmq.Socket) -> None:
        """Wait until ``sock`` takes a message without blocking, publishing snapshots meanwhile: the
        launcher takes them as heartbeats, and a stage held up by the next one is waiting, not hung."""
        while not sock.poll(self.timeout_ms() + 1, zmq.POLLOUT):
            self.publish()


def summary(message: dict) -> str:
    """One line describing a metrics message (for bus.tap)."""
    latency = " ".join(f"{name} p50 {_ms(w['p50'])} p95 {_ms(w['p95'])}" for name, w in message["latency_ms"].items())
    return (f"{message['worker']:10} {message['fps']:6.1f} fps  in {message['messages_in']} "
            f"out {message['messages_out']}  queue {message['queue']}  drops {message['drops']} "
            f"errors {message['errors']}  {latency}").rstrip()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
