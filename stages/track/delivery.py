"""At-least-once delivery of a job's frames from decode to the track stage, both halves.

The protocol, on the ``frames``/``detections`` links and the ``acks`` link back (``ack`` messages)::

    decode (Sender)                                  track (Receiver)
    sends frame i, keeps it ------ frames/detections ------> files it in the reorder buffer
    forgets frames < upto <--------- ack(upto) ------------- publishes frames in order
    sends frames again    <--------- ack(upto, resend) ----- a frame missing too long
    sends the whole window again after ``RESEND_WINDOW_AFTER_S`` without an ack (the only worker died
    holding every frame: the receiver sees no gap)

A worker that dies takes the frames it held with it: the receiver notices the gap and asks for them
again; duplicates are refused by the reorder buffer. A frame is asked for once it has been missing
for a few detection latencies (at least ``RESEND_AFTER_MIN_S``) while later frames came in, or when
nothing came at all for that long; one still missing after ``MAX_DETECTION_TRIES`` requests is
published as failed rather than stall its job (requests before the job's first detection do not
count), and a job that nothing moves for ``--stall-timeout``
seconds ends with an error. The sender holds at most ``limit`` frames, which also keeps decode from
running far ahead.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import zmq

from bus import messages, sockets
from bus.frame_ring import FrameRing
from bus.logline import log_line
from bus.metrics import StageMetrics
from stages.track.reorder import ReorderBuffer

# Receiver: when to ask again for a missing frame, and how often before giving up on it.
MAX_DETECTION_TRIES = 3
RESEND_AFTER_MIN_S = 2.0  # a frame missing this long (and a few detection latencies) is asked for again
RESEND_AFTER_LATENCIES = 4
# Sender: a full window with no ack for this long (or 4× the longest gap between acks so far, if longer) is
# sent again: the launcher passes its heartbeat timeout, past which a silent worker has been replaced.
RESEND_WINDOW_AFTER_S = 30.0
RESEND_WINDOW_AFTER_GAPS = 4
ACK_WAIT_MS = 100
ACK_TIMEOUT_S = 60.0  # give up on acknowledgements after this long without any (the track stage is gone)


class Sender:
    """Decode's half: frames sent but not yet acknowledged by the track stage, kept to send again on request.

    While it waits for acks it goes on publishing ``metrics``: the launcher takes them as heartbeats.
    A frame sent in ``ring`` keeps its slot until it is acknowledged.
    """

    def __init__(self, job: str, frames: zmq.Socket, acks: zmq.Socket | None, limit: int, log,
                 metrics: StageMetrics, cancelled, ring: FrameRing | None = None,
                 resend_after_s: float = RESEND_WINDOW_AFTER_S):
        self.job, self.frames, self.acks, self.limit, self.log = job, frames, acks, limit, log
        self.metrics, self.cancelled, self.ring = metrics, cancelled, ring
        self.unacked: dict[int, dict] = {}
        self.resend_after_s = resend_after_s
        self.last_ack = time.monotonic()
        self.longest_ack_gap = 0.0

    def add(self, index: int, message: dict) -> None:
        if self.acks is not None:
            self.unacked[index] = message
            # A cancelled job's acks may never come: the track stage that had its frames may be gone.
            while len(self.unacked) >= self.limit and not self.cancelled(self.job):
                self.metrics.publish()
                if not self.handle_acks(ACK_WAIT_MS):
                    self.resend_if_forgotten()

    def resend_if_forgotten(self) -> None:
        """Send every unacknowledged frame again once the acks have been silent for too long."""
        silent = time.monotonic() - self.last_ack
        if silent < max(self.resend_after_s, RESEND_WINDOW_AFTER_GAPS * self.longest_ack_gap):
            return
        log_line(self.log, logging.WARNING, "window_resent", job=self.job, frames=len(self.unacked),
                 no_ack_for_s=round(silent, 1))
        for index in sorted(self.unacked):
            self.resend(index)
        self.last_ack = time.monotonic()

    def resend(self, index: int) -> None:
        self.metrics.wait_writable(self.frames)
        sockets.send(self.frames, self.unacked[index])

    def handle_acks(self, timeout_ms: int = 0) -> bool:
        """Apply the acks that arrive within ``timeout_ms``; False if none came."""
        if self.acks is None or not self.acks.poll(timeout_ms):
            return False
        while self.acks.poll(0):
            try:
                ack = sockets.receive(self.acks, "acks")
            except sockets.MALFORMED as exc:
                log_line(self.log, logging.WARNING, "bad_ack_dropped", job=self.job, error=exc)
                continue
            if ack["job"] != self.job:
                continue
            now = time.monotonic()
            self.longest_ack_gap, self.last_ack = max(self.longest_ack_gap, now - self.last_ack), now
            for index in [i for i in self.unacked if i < ack["upto"]]:
                done = self.unacked.pop(index)
                if "shm" in done:
                    self.ring.release(done["shm"]["slot"])
            for index in ack["resend"]:
                if index in self.unacked:
                    log_line(self.log, logging.INFO, "frame_resent", job=self.job, frame=index)
                    self.resend(index)
        return True

    def drain(self, timeout_s: float) -> None:
        """After the last frame: keep answering until every frame is acknowledged."""
        quiet_since = time.monotonic()
        while self.unacked and time.monotonic() - quiet_since < timeout_s and not self.cancelled(self.job):
            self.metrics.publish()
            if self.handle_acks(ACK_WAIT_MS):
                quiet_since = time.monotonic()


@dataclass
class Receipt:
    """The receiver's bookkeeping of one job."""

    last_detection: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    detections: int = 0  # detections of the job that came
    detection_latency: float = 0.0  # running mean, s: how long to wait before asking decode to resend
    resend_tries: dict[int, int] = field(default_factory=dict)  # index -> times asked
    # index -> when it was last seen missing with later frames in, or asked for
    missing_since: dict[int, float] = field(default_factory=dict)
    acked_upto: int = 0


class Receiver:
    """The track stage's half, for the jobs in ``reorder``: acks, asking again for missing frames, stalls."""

    def __init__(self, acks: zmq.Socket | None, reorder: ReorderBuffer, log, metrics: StageMetrics):
        self.acks = acks
        self.reorder = reorder
        self.log = log
        self.metrics = metrics
        self.receipts: dict[str, Receipt] = {}

    def receipt(self, job: str) -> Receipt:
        return self.receipts.setdefault(job, Receipt())

    def forget(self, job: str) -> None:
        self.receipts.pop(job, None)

    def progressed(self, job: str) -> None:
        """Something moved ``job`` on (a message of it came, or a frame of it was published)."""
        self.receipt(job).last_progress = time.monotonic()

    def detection_arrived(self, message: dict) -> None:
        """Note a detection: the resend wait counts from it and follows the detection latency."""
        receipt = self.receipt(message["job"])
        receipt.last_detection = time.monotonic()
        receipt.detections += 1
        stamps = message.get("timestamps", {})
        # A resent frame keeps its first decode time: its latency would count the wait for the resend.
        if "decoded" in stamps and "detected" in stamps and message["index"] not in receipt.resend_tries:
            latency = stamps["detected"] - stamps["decoded"]
            # The first sample stands for the mean: starting from 0, a slow detector's first batch would
            # count a tenth, and the next frames would be asked for again while still being detected.
            weight = 1.0 if receipt.detections == 1 else 0.1
            receipt.detection_latency += weight * (latency - receipt.detection_latency)

    def acknowledge(self, job: str) -> None:
        """Tell decode which frames are done, so it can forget them."""
        receipt, upto = self.receipt(job), self.reorder.next_index(job)
        if upto != receipt.acked_upto:
            self.send_ack(messages.ack(job, upto, []))
            receipt.acked_upto = upto

    def send_ack(self, ack: dict) -> None:
        if self.acks is not None:
            try:
                sockets.send(self.acks, ack, zmq.NOBLOCK)
            except zmq.Again:  # no decode listening (a stage run alone): the resend tries run out instead
                pass

    def request_missing(self, job: str, fps: float, frames: int | None) -> tuple[bool, list[dict]]:
        """Ask decode again for the frames of ``job`` (``frames`` in all, None while unknown) that have not come.

        A frame is overdue once it has been missing for the resend wait while later frames
        came in (the other workers go on), or when no detection at all came for that long.
        After ``MAX_DETECTION_TRIES`` requests a frame is given up on: returned as a failed
        detection (``detection_failed``, people filled by the tracker) for the stage to take
        like one that came, rather than stall the job. Returns whether it asked (False while
        nothing is overdue; the stage then publishes what is ready) and the frames given up on.
        """
        receipt = self.receipt(job)
        first = self.reorder.next_index(job)
        waiting = self.reorder.last_waiting(job)
        stop = frames if frames is not None else (waiting + 1 if waiting is not None else first)
        if first >= stop:
            return False, []
        now = time.monotonic()
        wait_s = max(RESEND_AFTER_MIN_S, RESEND_AFTER_LATENCIES * receipt.detection_latency)
        quiet = now - receipt.last_detection >= wait_s
        for index in [i for i in receipt.missing_since if i < first]:
            del receipt.missing_since[index]
        overdue = [i for i in range(first, stop) if self.reorder.peek(job, i) is None
                   and (quiet or now - receipt.missing_since.setdefault(i, now) >= wait_s)]
        if not overdue:
            return False, []
        resend, given_up = [], []
        for index in overdue:
            receipt.missing_since[index] = now
            # Before the job's first detection the wait knows nothing of the detector's pace (a model
            # warming up, HMR 2.0's first batch on a CPU): frames are asked for again, but not given up on.
            receipt.resend_tries[index] = receipt.resend_tries.get(index, 0) + (receipt.detections > 0)
            if receipt.resend_tries[index] <= MAX_DETECTION_TRIES:
                resend.append(index)
            else:
                error = f"no detection after {MAX_DETECTION_TRIES} tries"
                log_line(self.log, logging.ERROR, "detection_failed", job=job, frame=index, error=error)
                given_up.append(messages.detections(job, index, index * 1000.0 / fps, [], error))
        if resend:
            log_line(self.log, logging.WARNING, "resend_requested", job=job, frames=resend)
            self.metrics.retries += len(resend)
            self.send_ack(messages.ack(job, first, resend))
        receipt.last_detection = now
        return True, given_up

    def stalled_end(self, job: str, stall_timeout: float) -> dict | None:
        """The job_end that ends ``job`` with an error when nothing has moved it for ``stall_timeout``
        seconds; None while it moves."""
        idle = time.monotonic() - self.receipt(job).last_progress
        if idle < stall_timeout:
            return None
        at = self.reorder.next_index(job)
        return messages.job_end(job, at, f"stalled: no progress for {idle:.0f} s at frame {at}")
