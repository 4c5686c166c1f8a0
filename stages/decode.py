"""Decode stage: turns a job's source into a stream of frames for the detect workers.

For each job it sends ``job_start`` to the track stage (events link), then one
``image`` message per frame to the workers (frames link), then ``job_end``
with the number of frames decoded. A source that cannot be opened or breaks
mid-way ends its job with ``job_end`` status ``error``; the stage carries on.
Frames larger than ``--max-side`` (or the job's ``max_side``) are downscaled first.
Frames go as raw pixels, as JPEG (``--jpeg``: workers on other hosts) or, with
``--shm``, in a frame ring in shared memory (bus.frame_ring: workers on this host).

Serving, up to ``--max-jobs`` jobs decode at once, each on a lane of its own (a thread:
OpenCV's decoding and resizing release the GIL), with its own at-least-once delivery
(``Sender``); more wait in submission order. The stage's loop deals the lanes' frames out
to the workers (``FairFrames``): frames of live jobs (a camera, a stream, ``realtime``)
first, then the other jobs, the least served first (in turn, one frame each, for jobs
submitted together).

    python -m stages.decode VIDEO            # one job, then exit
    python -m stages.decode                  # serve jobs from the jobs link
"""
from __future__ import annotations

import argparse
import errno
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import zmq

import options
import outputs
from bus import codec, messages, sockets
from bus.frame_ring import FrameRing, frame_bytes, free_bytes, remove_stale, slots_that_fit
from bus.log import MessageLog
from bus.logline import log_line
from bus.metrics import StageMetrics
from bus.schema import SchemaError
from options.groups import DECODE, TRIM
from stages import runtime
from stages.track.delivery import ACK_TIMEOUT_S, RESEND_WINDOW_AFTER_S, Sender
from video.sources import SourceError, fit_within, fitted_size, is_live, open_source, trimmed


def encode_jpeg(image, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("JPEG encoding failed")
    return data.tobytes()


RECORD_JPEG_QUALITY = 90  # recordings keep frames as JPEG: ~20x smaller than raw pixels
MIN_RING_SLOTS = 2  # fewer and most frames would go raw anyway


def send_event(events: zmq.Socket, message: dict, metrics: StageMetrics) -> None:
    metrics.wait_writable(events)
    sockets.send(events, message)
    metrics.sent(message)


def open_ring(job: str, slots: int, width: int, height: int, log) -> FrameRing | None:
    """A frame ring for a job's frames, as many slots as shared memory has room for (the frames
    that find no free slot go as raw pixels), or None when it has room for fewer than two."""
    slot_bytes = frame_bytes(height, width)
    try:
        fitting = slots_that_fit(slots, slot_bytes, free_bytes())
        if fitting < MIN_RING_SLOTS:
            raise OSError(errno.ENOSPC, f"/dev/shm has room for {fitting} frame(s) of {slot_bytes} bytes")
        ring = FrameRing(fitting, slot_bytes)
    except OSError as exc:
        log_line(log, logging.WARNING, "shared_memory_unavailable", job=job, error=exc, fallback="raw frames")
        return None
    if fitting < slots:
        log_line(log, logging.INFO, "small_frame_ring", job=job, slots=fitting, wanted=slots)
    return ring


def image_message(job: str, index: int, pts_ms: float, image, jpeg_quality: int | None,
                  ring: FrameRing | None) -> dict:
    """The frame as JPEG, in a slot of ``ring``, or (no slot free, or no ring) as raw pixels."""
    if jpeg_quality:
        return messages.image(job, index, pts_ms, jpeg=encode_jpeg(image, jpeg_quality),
                              width=image.shape[1], height=image.shape[0])
    reference = ring.put(image) if ring else None
    if reference:
        return messages.image(job, index, pts_ms, shm=reference, width=image.shape[1], height=image.shape[0])
    return messages.image(job, index, pts_ms, image)


def run_job(request: dict, frames: zmq.Socket, events: zmq.Socket, jpeg_quality: int | None,
            realtime: bool, log, record_dir: Path | None = None, acks: zmq.Socket | None = None,
            max_in_flight: int = 0, *, metrics: StageMetrics, cancelled=lambda job: None,
            max_side: int = DECODE["max_side"].default, shm: bool = False,
            resend_after_s: float = RESEND_WINDOW_AFTER_S, trim: Mapping[str, Any] | None = None) -> None:
    """Decode one job (``trim``: the stage's --start/--end/--max-frames, by name); ``shm`` (needs
    ``max_in_flight``: a slot is reused once its frame is acknowledged) puts its frames in a frame ring,
    removed when the job is over."""
    job = request["job"]
    # The stage's own --start/--end/--max-frames, unless the job sets them; job_start says what applied.
    options = {**{name: value for name, value in TRIM.values(trim or {}).items() if value is not None},
               **request.get("options", {})}
    try:
        source = trimmed(open_source(request["source"], fps=options.get("fps")), **TRIM.values(options))
    except SourceError as exc:
        log_line(log, logging.ERROR, "source_failed", job=job, error=exc)
        send_event(events, messages.job_end(job, 0, str(exc)), metrics)
        return
    info = source.info
    max_side = options.get("max_side", max_side)  # a job may set its own limit
    realtime = options.get("realtime", realtime)
    detected = fitted_size(info.width, info.height, max_side)
    downscaled = {} if detected == (info.width, info.height) else {
        "downscaled": {"width": detected[0], "height": detected[1]}}
    source_from = request.get("source_from") or info.mapped_from
    send_event(events, messages.job_start(job, info.source, info.fps, info.width, info.height,
                                          info.frame_count, options=options, **downscaled,
                                          **({"source_from": source_from} if source_from else {})), metrics)
    log_line(log, logging.INFO, "job_started", job=job, source=info.source, width=info.width, height=info.height,
             fps=info.fps, **downscaled)
    ring = open_ring(job, max_in_flight, *detected, log) if shm and max_in_flight > 0 else None
    decoded, error, started = 0, None, time.monotonic()
    recording = MessageLog(record_dir / job / "frames.log") if record_dir else None
    in_flight = Sender(job, frames, acks if max_in_flight > 0 else None, max_in_flight, log, metrics, cancelled,
                         ring, resend_after_s)
    try:
        try:
            for index, pts_ms, image in source:
                error = cancelled(job)
                if error:
                    break
                if realtime:  # pace like a live camera
                    time.sleep(max(0.0, started + pts_ms / 1000.0 - time.monotonic()))
                image = fit_within(image, max_side)
                message = image_message(job, index, pts_ms, image, jpeg_quality, ring)
                message["timestamps"] = {"decoded": time.time()}
                metrics.wait_writable(frames)  # every worker busy, or one restarting
                sockets.send(frames, message)
                in_flight.add(index, message)
                if recording:
                    recording.write(image_message(job, index, pts_ms, image, RECORD_JPEG_QUALITY, None))
                decoded += 1
                metrics.sent(message)
                metrics.queue = (info.frame_count or decoded) - decoded  # frames of the job still to decode
                metrics.publish()
        except SourceError as exc:
            error = str(exc)
            log_line(log, logging.ERROR, "source_broke", job=job, frame=decoded, error=exc)
        finally:
            metrics.queue = 0
            if recording:
                recording.close()
        send_event(events, messages.job_end(job, decoded, error), metrics)
        in_flight.drain(ACK_TIMEOUT_S)
    finally:
        if ring:  # also when interrupted: the file would outlive decode
            ring.close()
    log_line(log, logging.INFO, "job_decoded", job=job, frames=decoded)


class JobQueue:
    """Job requests and cancellations from the launcher, read by the stage's loop."""

    def __init__(self, jobs: zmq.Socket, events: zmq.Socket, bad: sockets.Counter):
        self.jobs, self.events, self.bad = jobs, events, bad
        self.waiting: deque[dict] = deque()
        # job -> the error to end it with; lanes read it (a dict lookup is atomic), only this loop writes it
        self.cancelled_jobs: dict[str, str] = {}

    def next(self) -> dict | None:
        return self.waiting.popleft() if self.waiting else None

    def cancelled(self, job: str) -> str | None:
        """The error to end ``job`` with if it has been cancelled, else None."""
        return self.cancelled_jobs.get(job)

    def read(self) -> None:
        while self.jobs.poll(0):
            try:
                message = codec.decode(self.jobs.recv_multipart(copy=False))
                request = messages.validate(message, sockets.LINKS["jobs"].carries)
            except codec.CodecError as exc:
                self.bad.drop(exc)
                continue
            except SchemaError as exc:
                self.bad.drop(exc)
                refuse(self.events, message, exc)
                continue
            if request["type"] == "job":
                self.waiting.append(request)
            elif any(r["job"] == request["job"] for r in self.waiting):
                self.waiting = deque(r for r in self.waiting if r["job"] != request["job"])
                sockets.send(self.events, messages.job_end(request["job"], 0, request.get("error", "cancelled")))
            else:
                self.cancelled_jobs[request["job"]] = request.get("error", "cancelled")


class FairFrames:
    """Which decoded frame the detect workers get next.

    Two classes: frames of live jobs (a camera, a stream, a job paced in real time) go before any
    other job's, so a live job keeps its pace while workers are short and file jobs take what is
    left. Within a class, least attained service: the frame goes to the job that has been sent the
    fewest frames so far, ties in turn. Jobs submitted together thus take turns, one frame each
    (round-robin by job: the same frame rate each, whatever their frames cost), and a job submitted
    later first catches up with those that ran before it, then shares with them: a short job is not
    held up by long ones. Pure: the stage's loop feeds it and sends.
    """

    def __init__(self):
        self._queues: OrderedDict[str, deque[dict]] = OrderedDict()  # jobs with frames waiting, next turn first
        self._live: set[str] = set()
        self._sent: dict[str, int] = {}  # job -> frames sent so far

    def add(self, message: dict, live: bool = False) -> None:
        """Queue a frame. A job's frames go in index order, so one sent before and asked for again (a
        worker died holding it) goes ahead of its job's new ones; one still waiting is not queued twice."""
        job, index = message["job"], message["index"]
        if live:
            self._live.add(job)
        queue = self._queues.setdefault(job, deque())
        if any(m["index"] == index for m in queue):
            return
        queue.insert(next((i for i, m in enumerate(queue) if m["index"] > index), len(queue)), message)

    def next(self) -> dict | None:
        """The next frame to send, or None when none waits."""
        if not self._queues:
            return None
        live = [j for j in self._queues if j in self._live]
        job = min(live or self._queues, key=lambda j: self._sent.get(j, 0))  # the first of the least served
        queue = self._queues.pop(job)
        message = queue.popleft()
        if queue:
            self._queues[job] = queue  # to the back of the line
        self._sent[job] = self._sent.get(job, 0) + 1
        return message

    def waiting(self, job: str) -> int:
        return len(self._queues.get(job, ()))

    def forget(self, job: str) -> None:
        """The job is over (its frames still waiting are sent)."""
        self._live.discard(job)
        self._sent.pop(job, None)

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())


class LaneMetrics:
    """What a lane reports: the frames of its job still to decode. The stage's loop counts the frames
    it sends and publishes (the metrics socket is that thread's); a lane never waits on the frames link."""

    def __init__(self):
        self.queue = 0

    def sent(self, message: dict) -> None:
        pass

    def publish(self) -> None:
        pass

    def wait_writable(self, sock: zmq.Socket) -> None:
        pass


@dataclass
class Lane:
    thread: threading.Thread
    acks: zmq.Socket | None  # the stage's end of the lane's acks
    metrics: LaneMetrics


class Lanes:
    """The jobs decoding now, each on its own thread; their frames and job events come in on ``lanes``,
    the frames go out on ``frames`` in ``FairFrames``' order, the events on ``events``; the acks of each
    job go to its lane."""

    def __init__(self, ctx: zmq.Context, args: argparse.Namespace, frames_for, events: zmq.Socket,
                 acks: zmq.Socket | None, queue: JobQueue, log, metrics: StageMetrics):
        """``frames_for(request)``: the frames link of the worker pool that serves the job."""
        self.ctx, self.args, self.frames_for, self.events, self.acks = ctx, args, frames_for, events, acks
        self.queue, self.log, self.metrics = queue, log, metrics
        self.intake = sockets.bind(ctx, "lanes")
        self.pools: dict[zmq.Socket, FairFrames] = {}  # a worker pool's frames link -> its jobs' frames waiting
        self.pool_of: dict[str, FairFrames] = {}  # job -> its pool's
        self.lanes: dict[str, Lane] = {}
        self.live: set[str] = set()
        # job -> its job_end, held until its last frame has gone to a worker: as when decode sent frames
        # itself, the track stage expects no frame, and asks for none again, before a worker could have it.
        self.ends: dict[str, dict] = {}
        self.ended: set[str] = set()  # jobs whose job_end has gone, lane still draining
        self.stopping: str | None = None

    def cancelled(self, job: str) -> str | None:
        return self.stopping or self.queue.cancelled(job)

    def start(self, request: dict) -> None:
        job, a = request["job"], self.args
        if a.realtime or request.get("options", {}).get("realtime") or is_live(request["source"]):
            self.live.add(job)
        self.pool_of[job] = self.pools.setdefault(self.frames_for(request), FairFrames())
        acks = sockets.bind(self.ctx, "lane_acks", f"inproc://lane-acks-{job}") if self.acks is not None else None
        metrics = LaneMetrics()

        def decode() -> None:
            out = sockets.connect(self.ctx, "lanes")  # frames and job events
            lane_acks = sockets.connect(self.ctx, "lane_acks", f"inproc://lane-acks-{job}") if acks else None
            try:
                run_job(request, out, out, a.jpeg, a.realtime, self.log, a.record, lane_acks, a.max_in_flight,
                        metrics=metrics, cancelled=self.cancelled, max_side=a.max_side, shm=a.shm,
                        resend_after_s=a.resend_after, trim=TRIM.values(a))
            except Exception as exc:  # a lane's failure ends its job, never the stage or another job
                log_line(self.log, logging.ERROR, "lane_failed", job=job, error=repr(exc))
                sockets.send(out, messages.job_end(job, 0, f"decode failed: {exc}"))
            finally:
                for sock in (out, lane_acks):
                    if sock is not None:
                        sock.close(linger=-1)  # inproc: what it holds reaches the loop at once

        self.lanes[job] = Lane(threading.Thread(target=decode, name=f"lane-{job}", daemon=True), acks, metrics)
        self.lanes[job].thread.start()

    def reap(self) -> None:
        """Forget the lanes whose job is over, once what they sent before they ended is taken (a frame
        resent last would otherwise come in for a job already forgotten)."""
        over = [job for job, lane in self.lanes.items() if not lane.thread.is_alive()]
        if over:
            self.take_from_lanes()
        for job in over:
            lane = self.lanes.pop(job)
            if lane.acks is not None:
                lane.acks.close()
            if job in self.ended:  # else its job_end (every lane sends one) is still to come or to go
                self.ended.discard(job)
                self.pool_of.pop(job).forget(job)
            self.live.discard(job)
            self.queue.cancelled_jobs.pop(job, None)

    def take_from_lanes(self) -> None:
        """Queue the frames the lanes sent for the workers, hold their job_ends, pass their job_starts on."""
        while self.intake.poll(0):
            message = codec.decode(self.intake.recv_multipart(copy=False))  # from a lane of this process
            if message["type"] == "image":
                self.pool_of[message["job"]].add(message, message["job"] in self.live)
            elif message["type"] == "job_end":
                self.ends[message["job"]] = message
            else:
                send_event(self.events, message, self.metrics)

    def step(self, timeout_ms: int) -> None:
        """Take what arrived within ``timeout_ms`` (job requests, frames from the lanes, acks) and send
        the workers as many frames as they take."""
        poller = zmq.Poller()
        poller.register(self.queue.jobs, zmq.POLLIN)
        poller.register(self.intake, zmq.POLLIN)
        if self.acks is not None:
            poller.register(self.acks, zmq.POLLIN)
        for frames, fair in self.pools.items():
            if len(fair):
                poller.register(frames, zmq.POLLOUT)
        ready = dict(poller.poll(timeout_ms))
        if self.queue.jobs in ready:
            self.queue.read()
        self.take_from_lanes()
        if self.acks is not None:
            self.route_acks()
        for frames, fair in self.pools.items():
            while len(fair) and frames.poll(0, zmq.POLLOUT):
                message = fair.next()
                sockets.send(frames, message)
                self.metrics.sent(message)
        for job in [job for job in self.ends if not self.pool_of[job].waiting(job)]:
            send_event(self.events, self.ends.pop(job), self.metrics)
            if job in self.lanes:
                self.ended.add(job)
            else:
                self.pool_of.pop(job).forget(job)
        self.metrics.queue = (sum(len(fair) for fair in self.pools.values())
                              + sum(lane.metrics.queue for lane in self.lanes.values()))

    def route_acks(self) -> None:
        while self.acks.poll(0):
            try:
                ack = sockets.receive(self.acks, "acks")
            except sockets.MALFORMED as exc:
                log_line(self.log, logging.WARNING, "bad_ack_dropped", error=exc)
                continue
            lane = self.lanes.get(ack["job"])
            if lane is None:
                continue
            try:
                # Never wait: a lane whose thread has ended (a cancelled job, not reaped yet) has no reader,
                # and a blocking send there stopped the whole stage, heartbeats included. An ack lost only
                # means a frame is resent, and the track stage drops duplicates.
                sockets.send(lane.acks, ack, zmq.NOBLOCK)
            except zmq.Again:
                pass

    def serve(self) -> None:
        """Run jobs as they come, up to ``--max-jobs`` at once."""
        while True:
            self.metrics.publish()
            self.reap()
            while len(self.lanes) < self.args.max_jobs and (request := self.queue.next()) is not None:
                self.metrics.received()
                self.start(request)
            self.step(min(self.metrics.timeout_ms(), 50) if self.lanes else self.metrics.timeout_ms())

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the running jobs (their rings removed) before the stage exits."""
        self.stopping = "decode stopped"
        deadline = time.monotonic() + timeout_s
        for lane in self.lanes.values():
            lane.thread.join(max(0.0, deadline - time.monotonic()))


def refuse(events: zmq.Socket, request: dict, error: SchemaError) -> None:
    """A job request that failed validation still ends its job, when it names one, so nobody waits on it."""
    job = request.get("job")
    if isinstance(job, str) and messages.JOB_ID.match(job):
        sockets.send(events, messages.job_end(job, 0, f"bad job request: {error}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.decode", description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", help="video file, image folder, camera index or stream URL")
    runtime.add_job_flag(parser)
    options.add_flags(parser, "decode", DECODE, outputs.table())
    parser.add_argument("--shm", action="store_true",
                        help="put raw frames in shared memory (/dev/shm) and send workers only where they are: every "
                             "worker must run on this host as this user; needs --max-in-flight (the launcher's "
                             "default); not with --jpeg")
    parser.add_argument("--max-in-flight", type=int, default=0, metavar="N",
                        help="keep up to N frames until the track stage acknowledges them, resending lost ones "
                             "(the launcher uses 32; 0: off, for running decode alone)")
    parser.add_argument("--resend-after", type=float, default=RESEND_WINDOW_AFTER_S, metavar="S",
                        help="send a full window of unacknowledged frames again after S seconds without an ack "
                             f"(default {RESEND_WINDOW_AFTER_S:.0f}; the launcher passes its heartbeat timeout)")
    runtime.add_endpoint_flags(parser, "frames", "events", "jobs", "acks")
    parser.add_argument("--detector-frames", action="append", default=[], metavar="KIND=ENDPOINT",
                        help="send the frames of jobs whose detector is KIND here, to that kind's worker pool "
                             "(launch.py --detectors); other jobs' frames go to --frames")
    runtime.add_remote_flag(parser, "frames")
    runtime.add_security_flags(parser)
    runtime.add_metrics_flags(parser)
    runtime.log_level_flag(parser)
    args = parser.parse_args(argv)
    if args.shm and (not args.max_in_flight or args.remote_frames or args.jpeg):
        parser.error("--shm needs --max-in-flight, and workers on this host only (no --remote-frames, no --jpeg)")
    log = runtime.start("decode", args.log_level)
    for name in remove_stale():
        log_line(log, logging.INFO, "stale_frame_ring_removed", name=name)

    ctx = zmq.Context()
    security = runtime.security_from_args(args)
    frames = sockets.bind(ctx, "frames", args.frames, security=security, also=runtime.remote_endpoints(args, "frames"))
    pools = {kind: sockets.bind(ctx, "frames", endpoint, security=security)
             for kind, endpoint in (pair.split("=", 1) for pair in args.detector_frames)}

    def frames_for(request: dict) -> zmq.Socket:
        return pools.get(request.get("options", {}).get("detector"), frames)

    events = sockets.connect(ctx, "events", args.events, security=security)
    acks = sockets.connect(ctx, "acks", args.acks, security=security) if args.max_in_flight else None
    bad = sockets.Counter("decode")
    metrics = runtime.start_metrics(ctx, args, "decode", bad, security)
    try:
        if args.source:
            job_options = {"fps": args.fps} if args.fps else {}
            request = messages.job_request(args.job or uuid.uuid4().hex[:12], args.source, job_options)
            run_job(request, frames, events, args.jpeg, args.realtime, log, args.record, acks, args.max_in_flight,
                    metrics=metrics, max_side=args.max_side, shm=args.shm, resend_after_s=args.resend_after,
                    trim=TRIM.values(args))
            return
        queue = JobQueue(sockets.connect(ctx, "jobs", args.jobs, security=security), events, bad)
        lanes = Lanes(ctx, args, frames_for, events, acks, queue, log, metrics)
        try:
            lanes.serve()
        finally:
            lanes.stop()
    except KeyboardInterrupt:
        pass
    finally:
        ctx.destroy(linger=2000)


if __name__ == "__main__":
    runtime.run(main)
