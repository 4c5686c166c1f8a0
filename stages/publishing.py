"""The track stage's core: each job's publishing state, and turning its detections into public messages.

Detections come from all workers in any order; a reorder buffer hands them to
the job's tracker in frame order, and every frame the tracker releases becomes one
``frame`` message, between the job's ``job_start`` and ``job_end``, with
``track_event`` messages as tracks are born, confirmed, lost, re-identified and
ended. Jobs are published one after another, never interleaved. ``TrackStage`` is
fed by the socket loop of ``stages.track`` (live) or by a recording (replay); it is
handed the sockets it sends on and never sets one up.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import zmq

from bus import codec, messages, sockets
from bus.events import event
from bus.joblog import JobLogs
from bus.log import MessageLog
from bus.metrics import StageMetrics
from bus.reorder import ReorderBuffer, ReorderOverflow
from options.groups import TRACKER
from outputs import OUTPUT_FILES, write_files
from pose import camera
from pose.angles import ANGLE_KEYS
from pose.detection import FrameDetections, in_source_pixels
from pose.skeleton import CANONICAL_JOINTS, HMR2_JOINTS
from stages.delivery import Delivery
from tracking.iou import IouTracker
from tracking.phalp_export import write_phalp_pkl
from tracking.tracker import Tracker
from tracking.types import TrackedFrame

RECORDED_STREAMS = ("events", "detections", "results")
MAX_EARLY_JOBS = 8
NATIVE_JOINTS = {"hmr2": HMR2_JOINTS}  # names of each detector's keypoints_3d_native


def make_tracker(kind: str, options: dict):
    """The tracker for one job: ``phalp`` (the PHALP-style Tracker) or ``iou`` (the plain baseline)."""
    if kind == "iou":
        return IouTracker()
    return Tracker(**TRACKER.values(options))


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
    # index -> when it was last seen missing with later frames in, or asked for
    missing_since: dict = field(default_factory=dict)
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
        self.delivery = Delivery(acks, self.reorder, log, self.metrics)
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
            job.last_progress = time.monotonic()
            self.delivery.detection_arrived(job, message)
        try:
            if not self.reorder.add(job_id, message["index"], message):
                event(self.log, logging.DEBUG, "duplicate_dropped", job=job_id, frame=message["index"])
        except ReorderOverflow as exc:
            event(self.log, logging.ERROR, "reorder_overflow", job=job_id, frame=message["index"], error=exc)

    def hold_early(self, job_id: str) -> None:
        """Detections may overtake their job's job_start (another link); keep a few such jobs' frames."""
        self.early_jobs[job_id] = None
        self.early_jobs.move_to_end(job_id)
        while len(self.early_jobs) > MAX_EARLY_JOBS:
            stale, _ = self.early_jobs.popitem(last=False)
            self.reorder.forget(stale)
            event(self.log, logging.WARNING, "unknown_job_dropped", job=stale, reason="no job_start came")

    def request_missing(self) -> None:
        """Ask decode again for the head job's frames that have not come (``Delivery.request_missing``)."""
        if self.order and self.delivery.request_missing(self.jobs[self.order[0]]):
            self.pump()

    def fail_stalled(self) -> None:
        """End the head job with an error when nothing has moved it for ``stall_timeout`` seconds."""
        if not self.order:
            return
        job = self.jobs[self.order[0]]
        end = self.delivery.stalled_end(job, self.args.stall_timeout)
        if end is None:
            return
        job.end = end
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
            self.delivery.acknowledge(job)
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
        # Frame 0 comes even after job_end (decode runs ahead of the workers), or is published as failed.
        if job.start is None or (first is None and (job.end is None or job.end["frames"] > 0)):
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
        wanted = {name: getattr(self.args, name) for name in OUTPUT_FILES}
        if any(wanted.values()):  # read now: newer jobs' logs may push it out
            self.output_writer.submit(write_files, wanted, job.id, job.start, job.end, self.logs.messages(job.id),
                                      self.log)
        event(self.log, logging.INFO, "job_published", job=job.id, frames=job.published, status=end["status"])
        self.reorder.forget(job.id)
        del self.jobs[job.id]
        self.order.pop(0)
