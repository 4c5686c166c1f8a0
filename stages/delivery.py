"""Delivery between decode and the track stage: acks, asking again for missing frames, ending stalled jobs.

Decode keeps each frame it sent until the track stage acknowledges it (``ack`` on
the acks link), so a frame held by a worker that died can be asked for again: once
it has been missing for a few detection latencies (at least 2 s) while later frames
came in, or nothing came at all for that long.
A frame still missing after ``MAX_DETECTION_TRIES`` requests is published as
failed rather than stall its job; a job that nothing moves for ``--stall-timeout``
seconds ends with an error.
"""
from __future__ import annotations

import logging
import time

import zmq

from bus import messages, sockets
from bus.events import event
from bus.metrics import StageMetrics
from bus.reorder import ReorderBuffer

MAX_DETECTION_TRIES = 3
RESEND_AFTER_MIN_S = 2.0  # a frame missing this long (and a few detection latencies) is asked for again
RESEND_AFTER_LATENCIES = 4


class Delivery:
    """The track stage's end of the acks link, for the jobs in ``reorder``.

    Works on ``stages.publishing.Job`` objects: ``acked_upto``, ``resend_tries``,
    ``last_detection`` and ``detection_latency`` are its bookkeeping.
    """

    def __init__(self, acks: zmq.Socket | None, reorder: ReorderBuffer, log, metrics: StageMetrics):
        self.acks = acks
        self.reorder = reorder
        self.log = log
        self.metrics = metrics

    def detection_arrived(self, job, message: dict) -> None:
        """Note a detection of ``job``: the resend wait counts from it and follows the detection latency."""
        job.last_detection = time.monotonic()
        stamps = message.get("timestamps", {})
        # A resent frame keeps its first decode time: its latency would count the wait for the resend.
        if "decoded" in stamps and "detected" in stamps and message["index"] not in job.resend_tries:
            job.detection_latency += 0.1 * (stamps["detected"] - stamps["decoded"] - job.detection_latency)

    def acknowledge(self, job) -> None:
        """Tell decode which frames are done, so it can forget them."""
        upto = self.reorder.next_index(job.id)
        if upto != job.acked_upto:
            self.send_ack(messages.ack(job.id, upto, []))
            job.acked_upto = upto

    def send_ack(self, ack: dict) -> None:
        if self.acks is not None:
            try:
                sockets.send(self.acks, ack, zmq.NOBLOCK)
            except zmq.Again:  # no decode listening (a stage run alone): the resend tries run out instead
                pass

    def request_missing(self, job) -> bool:
        """Ask decode again for the job's frames that have not come (a worker died holding them).

        A frame is overdue once it has been missing for the resend wait while later frames
        came in (the other workers go on), or when no detection at all came for that long.
        After ``MAX_DETECTION_TRIES`` requests a frame is put in the reorder buffer as
        failed (``detection_failed``, people filled by the tracker) rather than stall the
        job. False while nothing is overdue; True once it asked (the stage then publishes what is ready).
        """
        first = self.reorder.next_index(job.id)
        waiting = self.reorder.last_waiting(job.id)
        stop = job.end["frames"] if job.end is not None else (waiting + 1 if waiting is not None else first)
        if job.start is None or first >= stop:
            return False
        now = time.monotonic()
        wait_s = max(RESEND_AFTER_MIN_S, RESEND_AFTER_LATENCIES * job.detection_latency)
        quiet = now - job.last_detection >= wait_s
        for index in [i for i in job.missing_since if i < first]:
            del job.missing_since[index]
        overdue = [i for i in range(first, stop) if self.reorder.peek(job.id, i) is None
                   and (quiet or now - job.missing_since.setdefault(i, now) >= wait_s)]
        if not overdue:
            return False
        resend = []
        for index in overdue:
            job.missing_since[index] = now
            job.resend_tries[index] = job.resend_tries.get(index, 0) + 1
            if job.resend_tries[index] <= MAX_DETECTION_TRIES:
                resend.append(index)
            else:
                error = f"no detection after {MAX_DETECTION_TRIES} tries"
                event(self.log, logging.ERROR, "detection_failed", job=job.id, frame=index, error=error)
                pts = index * 1000.0 / job.start["fps"]
                self.reorder.add(job.id, index, messages.detections(job.id, index, pts, [], error))
        if resend:
            event(self.log, logging.WARNING, "resend_requested", job=job.id, frames=resend)
            self.metrics.retries += len(resend)
            self.send_ack(messages.ack(job.id, first, resend))
        job.last_detection = now
        return True

    def stalled_end(self, job, stall_timeout: float) -> dict | None:
        """The job_end that ends ``job`` with an error when nothing has moved it for ``stall_timeout``
        seconds; None while it moves."""
        idle = time.monotonic() - job.last_progress
        if idle < stall_timeout:
            return None
        at = self.reorder.next_index(job.id)
        return messages.job_end(job.id, at, f"stalled: no progress for {idle:.0f} s at frame {at}")
