"""Track stage: orders detections, follows people across frames, publishes results.

Detections come from all workers in any order; a reorder buffer hands them to
the tracker in frame order, and every frame the tracker releases is published
on the results socket (XPUB) as one ``frame`` message, between the job's
``job_start`` and ``job_end``, with ``track_event`` messages as tracks are born,
confirmed, lost, re-identified and ended. Jobs are published one after another,
never interleaved.

    python -m stages.track --results tcp://127.0.0.1:5555 --lookahead 8
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import zmq

from bus import codec, messages, sockets
from bus.events import event
from bus.joblog import DEFAULT_FOLDER, JobLogs
from bus.log import MessageLog, read
from bus.metrics import StageMetrics
from bus.reorder import ReorderBuffer, ReorderOverflow
from outputs import OUTPUT_FILES
from pose import camera
from pose.angles import ANGLE_KEYS
from pose.detection import FrameDetections, in_source_pixels
from pose.skeleton import CANONICAL_JOINTS, HMR2_JOINTS
from stages import runtime
from tracking.iou import IouTracker
from tracking.phalp_export import write_phalp_pkl
from tracking.tracker import Tracker
from tracking.types import TrackedFrame

RECORDED_STREAMS = ("events", "detections", "results")
MAX_EARLY_JOBS = 8
MAX_DETECTION_TRIES = 3
RESEND_AFTER_MIN_S = 2.0  # a frame missing this long (and a few detection latencies) is asked for again
RESEND_AFTER_LATENCIES = 4
NATIVE_JOINTS = {"hmr2": HMR2_JOINTS}  # names of each detector's keypoints_3d_native
TRACKER_OPTIONS = ("lookahead", "subjects", "smoothing", "n_init", "max_age")  # a job may override these


def make_tracker(kind: str, options: dict):
    """The tracker for one job: ``phalp`` (the PHALP-style Tracker) or ``iou`` (the plain baseline)."""
    if kind == "iou":
        return IouTracker()
    return Tracker(**{key: options[key] for key in TRACKER_OPTIONS if key in options})


@dataclass
class Job:
    """One job's publishing state."""

    id: str
    start: dict | None = None  # job_start from decode, once it arrived
    end: dict | None = None  # job_end from decode: how many frames to expect
    tracker: object = None  # made when the job starts publishing
    published: int = 0
    with_person: int = 0
    frame_info: dict = field(default_factory=dict)  # index -> (timestamps, detection failed)
    last_progress: float = field(default_factory=time.monotonic)
    last_detection: float = field(default_factory=time.monotonic)
    detection_latency: float = 0.0  # running mean, s: how long to wait before asking decode to resend
    resend_tries: dict = field(default_factory=dict)  # index -> times asked
    acked_upto: int = 0
    out_file: object = None
    kept_frames: list[TrackedFrame] | None = None  # for the PHALP export
    log: MessageLog | None = None  # the job's results log, for replay and the output files
    recording: dict[str, MessageLog] | None = None  # stream name -> log, with --record


def public_job_start(start: dict, first_detections: dict | None) -> dict:
    """Decode's job_start plus what a backend needs to read the arrays."""
    detector = start.get("options", {}).get("detector", "unknown")
    K = camera.intrinsics(start["width"], start["height"])
    message = {
        **start,
        "detector": detector,
        "joints": {"keypoints_2d": list(CANONICAL_JOINTS), "keypoints_3d": list(CANONICAL_JOINTS),
                   **({"keypoints_3d_native": list(NATIVE_JOINTS[detector])} if detector in NATIVE_JOINTS else {})},
        "angles": list(ANGLE_KEYS),
        "intrinsics": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]},
    }
    if first_detections is not None and "mesh_faces" in first_detections:
        message["mesh_faces"] = first_detections["mesh_faces"]
    return message


def in_source_frame(start: dict, frame: FrameDetections) -> FrameDetections:
    """Detections made on downscaled frames (``job_start.downscaled``) in the source's pixels."""
    if "downscaled" not in start:
        return frame
    source, detected = (start["width"], start["height"]), (start["downscaled"]["width"], start["downscaled"]["height"])
    return replace(frame, people=[in_source_pixels(person, source, detected) for person in frame.people])


class TrackStage:
    """The stage's logic, fed by the socket loop (live) or by a recording (replay).

    ``clock`` stamps each frame's ``published`` time; a replay passes None so that
    the same recording always gives byte-identical output. ``metrics`` counts what it publishes.
    """

    def __init__(self, results: zmq.Socket, status: zmq.Socket | None, args: argparse.Namespace, log,
                 clock=time.time, acks: zmq.Socket | None = None, metrics: StageMetrics | None = None):
        self.metrics = metrics or StageMetrics("track", "replay")
        self.results = results
        self.acks = acks
        self.clock = clock
        self.status = status
        self.args = args
        self.subscriptions = 0
        self.gate_open = args.wait_subscribers <= 0  # opens once, at the N-th subscription
        self.log = log
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []  # jobs in the order decode started them
        self.early_jobs: OrderedDict[str, None] = OrderedDict()  # detections seen, job_start not yet
        self.reorder = ReorderBuffer()
        self.logs = JobLogs(args.job_log, args.keep_jobs)
        # Output files can take minutes (an overlay decodes the whole video again): written on a thread of
        # their own, one job after another, so that the loop goes on publishing, and heart-beating, meanwhile.
        self.output_writer = ThreadPoolExecutor(1, thread_name_prefix="outputs")

    def job(self, job_id: str) -> Job:
        """The job decode told us about (only decode's events create jobs)."""
        if job_id not in self.jobs:
            job = self.jobs[job_id] = Job(job_id)
            self.order.append(job_id)
            self.early_jobs.pop(job_id, None)
            if self.args.record is not None:
                folder = self.args.record / job_id
                job.recording = {name: MessageLog(folder / f"{name}.log") for name in RECORDED_STREAMS}
                for message in self.reorder.waiting_items(job_id):  # arrived before its job_start
                    job.recording["detections"].write(message)
        return self.jobs[job_id]

    def record(self, job: Job, stream: str, message: dict) -> None:
        if job.recording is not None:
            job.recording[stream].write(message)

    # --- inputs ------------------------------------------------------------
    def on_subscription(self, frame: bytes) -> None:
        if frame[:1] == b"\x01":
            self.subscriptions += 1
        elif frame[:1] == b"\x00":
            self.subscriptions -= 1
        self.gate_open = self.gate_open or self.subscriptions >= self.args.wait_subscribers

    def on_event(self, message: dict) -> None:
        job = self.job(message["job"])
        job.last_progress = time.monotonic()
        self.record(job, "events", message)
        if message["type"] == "job_start":
            job.start = message
        else:
            job.end = message

    def on_detections(self, message: dict) -> None:
        job_id = message["job"]
        job = self.jobs.get(job_id)
        if job is None:
            self.hold_early(job_id)
        else:
            self.record(job, "detections", message)
            job.last_progress = job.last_detection = time.monotonic()
            stamps = message.get("timestamps", {})
            # A resent frame keeps its first decode time: its latency would count the wait for the resend.
            if "decoded" in stamps and "detected" in stamps and message["index"] not in job.resend_tries:
                job.detection_latency += 0.1 * (stamps["detected"] - stamps["decoded"] - job.detection_latency)
        try:
            if not self.reorder.add(job_id, message["index"], message):
                event(self.log, logging.DEBUG, "duplicate_dropped", job=job_id, frame=message["index"])
        except ReorderOverflow as exc:
            event(self.log, logging.ERROR, "reorder_overflow", job=job.id, frame=message["index"], error=exc)

    def hold_early(self, job_id: str) -> None:
        """Detections may overtake their job's job_start (another link); keep a few such jobs' frames."""
        self.early_jobs[job_id] = None
        self.early_jobs.move_to_end(job_id)
        while len(self.early_jobs) > MAX_EARLY_JOBS:
            stale, _ = self.early_jobs.popitem(last=False)
            self.reorder.forget(stale)
            event(self.log, logging.WARNING, "unknown_job_dropped", job=stale, reason="no job_start came")

    def acknowledge(self, job: Job) -> None:
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

    def request_missing(self) -> None:
        """Ask decode again for the head job's frames that have not come (a worker died holding them).

        After ``MAX_DETECTION_TRIES`` requests a frame is published as failed
        (``detection_failed``, people filled by the tracker) rather than stall the job.
        """
        if not self.order:
            return
        job = self.jobs[self.order[0]]
        first = self.reorder.next_index(job.id)
        waiting = self.reorder.last_waiting(job.id)
        stop = job.end["frames"] if job.end is not None else (waiting + 1 if waiting is not None else first)
        wait_s = max(RESEND_AFTER_MIN_S, RESEND_AFTER_LATENCIES * job.detection_latency)
        if job.tracker is None or job.start is None or first >= stop or time.monotonic() - job.last_detection < wait_s:
            return
        resend = []
        for index in (i for i in range(first, stop) if self.reorder.peek(job.id, i) is None):
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
        job.last_detection = time.monotonic()
        self.pump()

    def fail_stalled(self) -> None:
        """End the head job with an error when nothing has moved it for ``stall_timeout`` seconds."""
        if not self.order:
            return
        job = self.jobs[self.order[0]]
        idle = time.monotonic() - job.last_progress
        if idle < self.args.stall_timeout:
            return
        job.end = messages.job_end(job.id, self.reorder.next_index(job.id),
                                   f"stalled: no progress for {idle:.0f} s at frame {self.reorder.next_index(job.id)}")
        if job.tracker is None:
            job.start = None  # publish only the error
        self.pump(force_end=True)

    # --- output ------------------------------------------------------------
    def publish(self, job: Job, message: dict) -> None:
        job.log.write(message)  # first: whoever sees it live can already replay it
        sockets.send(self.results, message)
        self.metrics.sent(message)
        self.record(job, "results", message)
        if job.out_file is not None:
            job.out_file.write(json.dumps(codec.to_json_compatible(message)) + "\n")

    def pump(self, force_end: bool = False) -> None:
        """Publish whatever is ready, head job first (``force_end``: the head job ends now)."""
        while self.gate_open and self.order:
            job = self.jobs[self.order[0]]
            if job.tracker is None and not self.begin(job):
                return
            for index, detections in self.reorder.ready(job.id):
                job.frame_info[index] = (detections.get("timestamps", {}), detections.get("error") is not None)
                frame = in_source_frame(job.start, messages.frame_detections(detections))
                self.publish_tracked(job, job.tracker.push(frame))
                job.last_progress = time.monotonic()
            self.acknowledge(job)
            if not force_end and job.start is not None and (
                    job.end is None or self.reorder.next_index(job.id) < job.end["frames"]):
                return
            force_end = False
            self.publish_tracked(job, job.tracker.finish())
            self.finish(job)

    def begin(self, job: Job) -> bool:
        """Publish job_start once frame 0 is in (it carries the mesh faces); False if not yet."""
        if job.end is not None and job.start is None:
            # The source never opened, or this stage was restarted after the job began: without a
            # job_start, the job publishes its job_end alone, whatever detections came.
            job.tracker = IouTracker()
            job.log = self.logs.open(job.id)
            self.reorder.forget(job.id)
            return True
        first = self.reorder.peek(job.id, 0)
        if job.start is None or (first is None and job.end is None):
            return False
        options = {**vars(self.args), **job.start.get("options", {})}
        job.tracker = make_tracker(options["tracker"], options)
        if self.args.out is not None:
            self.args.out.mkdir(parents=True, exist_ok=True)
            job.out_file = open(self.args.out / f"{job.id}.jsonl", "w")
        if self.args.phalp_pkl is not None:
            job.kept_frames = []
        job.log = self.logs.open(job.id)
        self.publish(job, public_job_start(job.start, first))
        return True

    def write_outputs(self, job: Job, results: list[dict]) -> None:
        """The files asked for, made from the job's results once it has ended (on the output thread)."""
        from outputs.app_json import write_app_json  # matplotlib and friends: only paid for when asked
        from outputs.overlay import render_overlay
        from report import write_report

        wanted = {name: getattr(self.args, name) for name in OUTPUT_FILES}
        writers = {"report": (write_report, "html"), "app_json": (write_app_json, "json"),
                   "overlay": (lambda m, path: render_overlay(job.start["source"], m, path), "mp4")}
        for name, folder in wanted.items():
            if folder is None or (name != "report" and (job.start is None or job.end.get("error"))):
                continue
            write, suffix = writers[name]
            folder.mkdir(parents=True, exist_ok=True)
            try:
                write(results, folder / f"{job.id}.{suffix}")
            except Exception as exc:  # an output file failing must not take the stage down
                event(self.log, logging.ERROR, "output_failed", job=job.id, output=name, error=exc)

    def serve_replay(self, sock: zmq.Socket) -> None:
        """Answer one replay request: the job's logged messages from a frame index, then replay_end."""
        identity, *parts = sock.recv_multipart(copy=False)
        try:
            request = messages.validate_replay_request(codec.decode(parts))
            found, next_index, done = self.logs.replay(request["job"], request["from"], request["count"])
            end = messages.replay_end(request["job"], next_index, done)
        except ValueError as exc:
            found, end = [], messages.replay_end("invalid", 0, True, str(exc))
        for message in [*found, end]:
            sock.send_multipart([identity, messages.topic(message), *codec.encode(message)], copy=False)

    def publish_tracked(self, job: Job, frames: list[TrackedFrame]) -> None:
        for change in job.tracker.events:
            self.publish(job, messages.track_event(job.id, change.index, change.kind, change.track_id))
        job.tracker.events.clear()
        for tracked in frames:
            timestamps, failed = job.frame_info.pop(tracked.index, ({}, False))
            people = [messages.person(p.track_id, p.state, p.confidence, p.frames_since_seen, p.detection, p.raw)
                      for p in tracked.people]
            message = messages.frame(job.id, tracked.index, tracked.pts_ms, people)
            message["detection_failed"] = failed
            message["timestamps"] = {**timestamps, **({"published": self.clock()} if self.clock else {})}
            self.publish(job, message)
            job.published += 1
            job.with_person += bool(people)
            if job.kept_frames is not None:
                job.kept_frames.append(tracked)
            if self.status is not None:
                sockets.send(self.status, messages.progress(job.id, job.published, job.with_person))

    def finish(self, job: Job) -> None:
        error = job.end.get("error")
        if job.published != job.end["frames"] and not error:
            error = f"published {job.published} of {job.end['frames']} frames"
        end = messages.job_end(job.id, job.published, error)
        if self.status is not None:  # first, so the job is done for the launcher when a backend sees job_end
            sockets.send(self.status, end)
        self.publish(job, end)
        if job.out_file is not None:
            job.out_file.close()
        for recording in (job.recording or {}).values():
            recording.close()
        if job.kept_frames is not None and job.start is not None:
            path = self.args.phalp_pkl
            write_phalp_pkl(path if path.suffix == ".pkl" else path / f"{job.id}.pkl", job.kept_frames,
                            job.start["width"], job.start["height"])
        job.log.close()
        if any(getattr(self.args, name) for name in OUTPUT_FILES):  # read now: newer jobs' logs may push it out
            self.output_writer.submit(self.write_outputs, job, self.logs.messages(job.id))
        event(self.log, logging.INFO, "job_published", job=job.id, frames=job.published, status=end["status"])
        self.reorder.forget(job.id)
        del self.jobs[job.id]
        self.order.pop(0)


def add_tracker_flags(parser: argparse.ArgumentParser) -> None:
    """Tracker options; the launcher passes them through and a job's options may override them."""
    parser.add_argument("--tracker", default="phalp", choices=["phalp", "iou"],
                        help="phalp: PHALP-style tracker that fills every frame; iou: plain box matching")
    parser.add_argument("--lookahead", type=int, default=8, metavar="K",
                        help="frames held back to interpolate gaps (0: strictly causal; default 8)")
    parser.add_argument("--subjects", type=int, default=1, choices=[0, 1],
                        help="1: keep a primary subject (the rider) first in every frame (default)")
    parser.add_argument("--no-smoothing", dest="smoothing", action="store_false",
                        help="publish unsmoothed values")
    parser.add_argument("--stall-timeout", type=float, default=300, metavar="S",
                        help="end a job with an error when it makes no progress for S seconds (default 300)")
    parser.add_argument("--n-init", type=int, default=3, help="hits that confirm a track (default 3)")
    parser.add_argument("--max-age", type=int, default=30, help="missed frames that end a track (default 30)")


def replay(stage: TrackStage, folder: Path) -> None:
    """Feed a recorded job through the stage: its job_start, every detection in recorded order, its job_end.

    With ``--wait-subscribers N`` nothing is fed until N subscriptions have come: a
    replay takes a second, so a subscriber that connects as it starts would miss its beginning.
    """
    while not stage.gate_open and not runtime.stop_requested():
        if stage.results.poll(250):
            stage.on_subscription(stage.results.recv())
    events = list(read(folder / "events.log", ("job_start", "job_end")))
    for message in events:
        if message["type"] == "job_start":
            stage.on_event(message)
    for message in read(folder / "detections.log", ("detections",)):
        stage.on_detections(message)
        stage.pump()
    for message in events:
        if message["type"] == "job_end":
            stage.on_event(message)
    stage.pump()


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Where results go besides the live socket; the launcher passes them through."""
    parser.add_argument("--job-log", type=Path, default=DEFAULT_FOLDER, metavar="DIR",
                        help=f"per-job results logs, for replay (default {DEFAULT_FOLDER})")
    parser.add_argument("--keep-jobs", type=int, default=50, metavar="N", help="job logs kept (default 50)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write an HTML report per job to DIR/<job>.html")
    parser.add_argument("--app-json", type=Path, metavar="DIR",
                        help="write the app's JSON document per job to DIR/<job>.json")
    parser.add_argument("--overlay", type=Path, metavar="DIR", help="write an overlay video per job to DIR/<job>.mp4")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.track", description=__doc__.split("\n")[0])
    parser.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                        help="hold publishing until N subscriptions have arrived")
    parser.add_argument("--out", type=Path, metavar="DIR", help="also write each job to DIR/<job>.jsonl")
    parser.add_argument("--phalp-pkl", type=Path, metavar="PATH",
                        help="also write PHALP-format results: PATH if it ends in .pkl, else PATH/<job>.pkl")
    add_output_flags(parser)
    parser.add_argument("--status", metavar="ENDPOINT", help="send progress to the launcher here")
    parser.add_argument("--record", type=Path, metavar="DIR",
                        help="save each job's events, detections and results to DIR/<job>/*.log")
    parser.add_argument("--replay", type=Path, metavar="JOB_DIR",
                        help="run a recorded job (DIR/<job> of --record) through the tracker alone, then exit")
    add_tracker_flags(parser)
    runtime.add_endpoint_flags(parser, "detections", "events", "results", "history", "acks")
    runtime.add_remote_flag(parser, "detections")
    runtime.add_security_flags(parser)
    runtime.add_metrics_flags(parser)
    runtime.log_level_flag(parser)
    args = parser.parse_args(argv)
    log = runtime.start("track", args.log_level, graceful=True)

    ctx = zmq.Context()
    security = runtime.security_from_args(args)
    detections = sockets.bind(ctx, "detections", args.detections, security=security,
                              also=runtime.remote_endpoints(args, "detections"))
    events = sockets.bind(ctx, "events", args.events, security=security)
    results = sockets.bind(ctx, "results", args.results, security=security)
    history = sockets.bind(ctx, "history", args.history, security=security)
    acks = sockets.bind(ctx, "acks", args.acks, security=security)
    status = sockets.connect(ctx, "status", args.status, security=security) if args.status else None
    if args.replay:
        stage = TrackStage(results, status, args, log, clock=None)
        try:
            replay(stage, args.replay)
        finally:
            stage.output_writer.shutdown()
            ctx.destroy(linger=2000)
        return
    bad = sockets.Counter("track")
    stage = TrackStage(results, status, args, log, acks=acks,
                       metrics=runtime.start_metrics(ctx, args, "track", bad, security))
    poller = zmq.Poller()
    for sock in (detections, events, results, history):
        poller.register(sock, zmq.POLLIN)
    try:
        while not runtime.stop_requested():
            stage.metrics.queue = sum(stage.reorder.waiting(job) for job in stage.jobs)
            stage.metrics.publish()
            # Wake up at least every 250 ms: metrics, missing frames, stalled jobs.
            ready = dict(poller.poll(min(250, stage.metrics.timeout_ms())))
            stage.request_missing()
            stage.fail_stalled()
            if results in ready:
                stage.on_subscription(results.recv())
            if history in ready:
                stage.serve_replay(history)
            for sock, expected, handle in ((events, ("job_start", "job_end"), stage.on_event),
                                           (detections, ("detections",), stage.on_detections)):
                if sock in ready:
                    try:
                        handle(sockets.receive(sock, expected))
                        stage.metrics.received()
                    except ValueError as exc:
                        bad.drop(exc)
            stage.pump()
    finally:
        stage.output_writer.shutdown()
        ctx.destroy(linger=2000)


if __name__ == "__main__":
    runtime.run(main)
