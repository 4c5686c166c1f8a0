"""The track stage's core: each job through its phases, and its detections turned into public messages.

Detections come from all workers in any order; a reorder buffer hands them to
the job's tracker in frame order, and every frame the tracker releases becomes one
``frame`` message, between the job's ``job_start`` and ``job_end``, with
``track_event`` messages as tracks are born, confirmed, lost, re-identified and
ended. Jobs that decode side by side publish side by side, each in its own frame order and
each on its own: one job's missing frames, stall or error holds up no other; a job's
``job_end`` waits for its result files (``outputs.FILES``) and lists them, while the other
jobs go on. ``TrackStage`` is
fed by the socket loop of ``stages.track.process`` (live) or by a recording (replay); it is
handed the sockets it sends on and never sets one up, and takes its settings by option name.
"""
from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import zmq

from bus import messages
from bus.joblog import JobLogs
from bus.logline import log_line
from bus.metrics import StageMetrics
from options.groups import TRACKER
from pose import camera
from pose.angles import ANGLE_KEYS
from pose.detection import Detection, FrameDetections, in_source_pixels
from pose.skeleton import CANONICAL_JOINTS, HMR2_JOINTS
from stages.track.delivery import Receiver
from stages.track.reorder import ReorderBuffer, ReorderOverflow
from stages.track.sinks import FilesSink, JobLogSink, JsonLinesSink, Recording, ResultsSink, Sink, StatusSink
from tracking.iou import IouTracker
from tracking.tracker import Tracker
from tracking.types import TrackedFrame, TrackedPerson

MAX_EARLY_JOBS = 8
NATIVE_JOINTS = {"hmr2": HMR2_JOINTS}  # names of each detector's keypoints_3d_native


def make_tracker(kind: str, settings: Mapping[str, Any]):
    """The tracker for one job: ``phalp`` (the PHALP-style Tracker) or ``iou`` (the plain baseline)."""
    if kind == "iou":
        return IouTracker()
    return Tracker(**TRACKER.values(settings))


class Phase(enum.Enum):
    WAITING = "waiting"  # decode told us of it; nothing published yet (job_start waits for frame 0)
    PUBLISHING = "publishing"  # job_start published; frames go out in order as they are ready
    ENDING_ALONE = "ending alone"  # its job_end came without a job_start: only the job_end is published


@dataclass
class PublishingJob:
    """One job's publishing state."""

    id: str
    phase: Phase = Phase.WAITING
    start: dict | None = None  # job_start from decode, once it arrived
    end: dict | None = None  # job_end from decode: how many frames to expect
    tracker: object = None  # made when the job starts publishing
    reposer: Callable[[list[Detection]], list[Detection]] | None = None  # reposed_people
    published: int = 0
    with_person: int = 0
    detection_failed: int = 0  # frames published with no detection (the detector failed on them)


@dataclass
class EndingJob:
    """A job whose frames are all out, its job_end waiting for its files (``files`` None: none asked for)."""

    job: PublishingJob
    end: dict
    files: Future | None


def public_job_start(start: dict, first_detections: dict | None) -> dict:
    """Decode's job_start plus what a backend needs to read the arrays."""
    detector = start.get("options", {}).get("detector", "unknown")
    K = camera.intrinsics(start["width"], start["height"], source_focal(start, first_detections))
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


def source_focal(start: dict, first_detections: dict | None) -> float | None:
    """The focal length (source pixels) the detector placed people with, as frame 0's detections say
    (``--fov``, the checkpoint's focal); None: the default rule."""
    focal = (first_detections or {}).get("focal_length")
    if focal is None or "downscaled" not in start:
        return focal
    return focal * max(start["width"], start["height"]) / max(start["downscaled"]["width"],
                                                              start["downscaled"]["height"])


def job_reposer(job: str, settings: Mapping[str, Any], log) -> Callable[[list[Detection]], list[Detection]] | None:
    """For an HMR 2.0 job (``settings``: the stage's and the job's options), what derives its SMPL-dependent
    values from the tracked SMPL parameters (``detectors.hmr2.reposer``), from ``--checkpoint`` or the
    4D-Humans cache; else None."""
    if settings.get("detector") != "hmr2":
        return None
    from detectors.hmr2.reposer import find_reposer  # torch: only a stage that tracks HMR 2.0 pays for it

    try:
        reposer = find_reposer(settings.get("checkpoint"))
        reason = "no HMR 2.0 checkpoint (--checkpoint or the 4D-Humans cache)"
    except Exception as exc:  # a checkpoint this stage cannot read costs the derived values, never the stage
        reposer, reason = None, f"cannot read the HMR 2.0 checkpoint: {exc}"
    if reposer is None:
        log_line(log, logging.WARNING, "smpl_model_missing", job=job,
                 reason=f"{reason}: native keypoints and vertices are smoothed apart from the SMPL parameters")
    return reposer


def reposed_people(reposer: Callable[[list[Detection]], list[Detection]],
                   people: list[TrackedPerson]) -> list[TrackedPerson]:
    """``people`` with every detection the tracker smoothed or filled passed through ``reposer``; an
    observation published as it came (``raw``) already holds together."""
    derived = iter(reposer([person.detection for person in people if person.detection is not person.raw]))
    return [person if person.detection is person.raw else replace(person, detection=next(derived))
            for person in people]


def in_source_frame(start: dict, frame: FrameDetections) -> FrameDetections:
    """Detections made on downscaled frames (``job_start.downscaled``) in the source's pixels."""
    if "downscaled" not in start:
        return frame
    source, detected = (start["width"], start["height"]), (start["downscaled"]["width"], start["downscaled"]["height"])
    return replace(frame, people=[in_source_pixels(person, source, detected) for person in frame.people])


class TrackStage:
    """The stage's logic, fed by the socket loop (live) or by a recording (replay).

    ``settings``: the track, tracker and outputs options by name (a job's own options override the
    tracker's). ``clock`` stamps each frame's ``published`` time; a replay passes None so that
    the same recording always gives byte-identical output. ``metrics`` counts what it publishes.
    """

    def __init__(self, results: zmq.Socket, status: zmq.Socket | None, settings: Mapping[str, Any], log,
                 clock=time.time, acks: zmq.Socket | None = None, metrics: StageMetrics | None = None):
        self.metrics = metrics or StageMetrics("track", "replay")
        self.results = results
        self.clock = clock
        self.settings = settings
        self.subscriptions = 0
        self.gate_open = settings["wait_subscribers"] <= 0  # opens once, at the N-th subscription
        self.log = log
        self.jobs: dict[str, PublishingJob] = {}
        self.early_jobs: OrderedDict[str, None] = OrderedDict()  # detections seen, job_start not yet
        self.reorder = ReorderBuffer()
        self.delivery = Receiver(acks, self.reorder, log, self.metrics)
        self.job_logs = JobLogs(settings["job_log"], settings["keep_jobs"])
        self.recording = Recording(settings["record"])
        self.files = FilesSink(settings, log)
        self.json_lines = JsonLinesSink(settings["out"], log)
        self.sinks: tuple[Sink, ...] = (self.json_lines, StatusSink(status), JobLogSink(self.job_logs),
                                        ResultsSink(results, self.metrics), self.recording, self.files)
        self.ending: list[EndingJob] = []  # in the order their frames were done

    def close(self) -> None:
        """Wait for the output files still being written, and publish their jobs' job_ends."""
        self.files.shutdown()
        self.publish_ends()

    def job(self, job_id: str) -> PublishingJob:
        """The job decode told us about (only decode's events create jobs)."""
        if job_id not in self.jobs:
            self.jobs[job_id] = PublishingJob(job_id)
            self.early_jobs.pop(job_id, None)
            for message in self.reorder.waiting_items(job_id):  # arrived before its job_start
                self.recording.record(job_id, "detections", message)
                self.delivery.detection_arrived(message)
        return self.jobs[job_id]

    # --- inputs ------------------------------------------------------------
    def on_subscription(self, frame: bytes) -> None:
        if frame[:1] == b"\x01":
            self.subscriptions += 1
        elif frame[:1] == b"\x00":
            self.subscriptions -= 1
        self.gate_open = self.gate_open or self.subscriptions >= self.settings["wait_subscribers"]

    def on_job_event(self, message: dict) -> None:
        if any(ending.job.id == message["job"] for ending in self.ending):
            # Its frames are out, its files being written: a stage that died meanwhile does not end it twice.
            log_line(self.log, logging.INFO, "late_event_ignored", job=message["job"], event=message["type"])
            return
        job = self.job(message["job"])
        self.delivery.progressed(job.id)
        self.recording.record(job.id, "events", message)
        if message["type"] == "job_start":
            job.start = message
        else:
            job.end = message

    def on_detections(self, message: dict) -> None:
        job_id = message["job"]
        if job_id not in self.jobs:
            self.hold_early(job_id)
        else:
            self.recording.record(job_id, "detections", message)
            self.delivery.progressed(job_id)
            self.delivery.detection_arrived(message)
        try:
            if not self.reorder.add(job_id, message["index"], message):
                log_line(self.log, logging.DEBUG, "duplicate_dropped", job=job_id, frame=message["index"])
        except ReorderOverflow as exc:
            log_line(self.log, logging.ERROR, "reorder_overflow", job=job_id, frame=message["index"], error=exc)

    def hold_early(self, job_id: str) -> None:
        """Detections may overtake their job's job_start (another link); keep a few such jobs' frames."""
        self.early_jobs[job_id] = None
        self.early_jobs.move_to_end(job_id)
        while len(self.early_jobs) > MAX_EARLY_JOBS:
            stale, _ = self.early_jobs.popitem(last=False)
            self.reorder.forget(stale)
            log_line(self.log, logging.WARNING, "unknown_job_dropped", job=stale, reason="no job_start came")

    def request_missing(self) -> None:
        """Ask decode again for each job's frames that have not come (``Receiver.request_missing``). A frame
        given up on comes in as a failed detection, recorded like any other: its replay publishes it failed too."""
        for job in list(self.jobs.values()):
            if job.start is None:
                continue
            asked, given_up = self.delivery.request_missing(job.id, job.start["fps"],
                                                            job.end["frames"] if job.end is not None else None)
            for failed in given_up:
                self.on_detections(failed)
            if asked:
                self.pump_job(job)

    def fail_stalled(self) -> None:
        """End each job that nothing has moved for ``stall_timeout`` seconds with an error."""
        for job in list(self.jobs.values()):
            end = self.delivery.stalled_end(job.id, self.settings["stall_timeout"])
            if end is None:
                continue
            job.end = end
            if job.phase is Phase.WAITING:
                job.start = None  # publish only the error
            self.pump_job(job, force_end=True)

    # --- output ------------------------------------------------------------
    def publish(self, job: PublishingJob, message: dict) -> None:
        for sink in self.sinks:
            sink.write(job.id, message, (job.published, job.with_person, job.detection_failed))

    def pump(self) -> None:
        """Publish whatever is ready, job by job."""
        self.publish_ends()
        for job in list(self.jobs.values()):
            self.pump_job(job)

    def pump_job(self, job: PublishingJob, force_end: bool = False) -> None:
        """Publish what is ready of ``job``, in its frame order (``force_end``: it ends now)."""
        if not self.gate_open:
            return
        if job.phase is Phase.WAITING and not self.begin(job):
            return
        if job.phase is Phase.PUBLISHING:
            for _, detections in self.reorder.ready(job.id):
                frame = in_source_frame(job.start, messages.frame_detections(detections))
                self.publish_tracked(job, job.tracker.push(frame))
                self.delivery.progressed(job.id)
            self.delivery.acknowledge(job.id)
            if not force_end and (job.end is None or self.reorder.next_index(job.id) < job.end["frames"]):
                return
            self.publish_tracked(job, job.tracker.finish())
        self.finish(job)

    def begin(self, job: PublishingJob) -> bool:
        """Publish job_start once frame 0 is in (it carries the mesh faces); False if not yet."""
        if job.end is not None and job.start is None:
            # The source never opened, or this stage was restarted after the job began: without a
            # job_start, the job publishes its job_end alone, whatever detections came.
            job.phase = Phase.ENDING_ALONE
            self.reorder.forget(job.id)
            self.open(job)
            return True
        first = self.reorder.peek(job.id, 0)
        # Frame 0 comes even after job_end (decode runs ahead of the workers), or is published as failed.
        if job.start is None or (first is None and (job.end is None or job.end["frames"] > 0)):
            return False
        settings = {**self.settings, **job.start.get("options", {})}
        job.tracker = make_tracker(settings["tracker"], settings)
        job.reposer = job_reposer(job.id, settings, self.log)
        job.phase = Phase.PUBLISHING
        self.open(job)
        # A one-off run on ports the system picked says which (stages.track.process).
        endpoints = {"endpoints": self.settings["endpoints"]} if self.settings.get("endpoints") else {}
        self.publish(job, {**public_job_start(job.start, first), **endpoints})
        return True

    def open(self, job: PublishingJob) -> None:
        for sink in self.sinks:
            sink.open(job.id)

    def publish_tracked(self, job: PublishingJob, frames: list[TrackedFrame]) -> None:
        for change in job.tracker.changes:
            self.publish(job, messages.track_event(job.id, change.index, change.kind, change.track_id))
        job.tracker.changes.clear()
        for tracked in frames:
            tracked_people = reposed_people(job.reposer, tracked.people) if job.reposer else tracked.people
            people = [messages.person(p.track_id, p.state, p.confidence, p.frames_since_seen, p.detection, p.raw)
                      for p in tracked_people]
            message = messages.frame(job.id, tracked.index, tracked.pts_ms, people)
            message["detection_failed"] = tracked.meta.get("detection_failed", False)
            message["timestamps"] = {**tracked.meta.get("timestamps", {}),
                                     **({"published": self.clock()} if self.clock else {})}
            job.published += 1
            job.with_person += bool(people)
            job.detection_failed += message["detection_failed"]
            self.publish(job, message)

    def finish(self, job: PublishingJob) -> None:
        """The job's frames are all out: its files are written, then its job_end published (publish_ends)."""
        error = job.end.get("error")
        if job.published != job.end["frames"] and not error:
            error = f"published {job.published} of {job.end['frames']} frames"
        if job.published and job.detection_failed == job.published and not error:  # every frame, tracked from nothing
            error = f"detection failed on all {job.published} frames (the detect stage's log says why)"
        end = messages.job_end(job.id, job.published, error)
        self.ending.append(EndingJob(job, end, self.files.submit(job.id, job.start, end)))
        self.reorder.forget(job.id)
        self.delivery.forget(job.id)
        del self.jobs[job.id]
        self.publish_ends()

    def publish_ends(self) -> None:
        """Publish the job_ends whose files are done, listing the files (``outputs``, ``output_errors``)."""
        for ending in [e for e in self.ending if e.files is None or e.files.done()]:
            self.ending.remove(ending)
            job = ending.job
            written, failed = ending.files.result() if ending.files is not None else ({}, {})
            out = self.json_lines.path(job.id)
            end = {**ending.end, "outputs": {**written, **({"out": str(out)} if out is not None else {})},
                   "output_errors": failed}
            self.publish(job, end)
            for sink in self.sinks:
                sink.close(job.id, job.start, job.end)
            log_line(self.log, logging.INFO, "job_published", job=job.id, frames=job.published,
                     status=end["status"], outputs=len(end["outputs"]), output_errors=len(failed))
