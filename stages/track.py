"""Track stage: orders detections, follows people across frames, publishes results.

Detections come from all workers in any order; a reorder buffer hands them to
the tracker in frame order, and every tracked frame is published on the
results socket (XPUB) as one ``frame`` message, between the job's
``job_start`` and ``job_end``. Jobs are published one after another, never
interleaved.

    python -m stages.track --results tcp://127.0.0.1:5555
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bus import codec, messages, sockets
from bus.reorder import ReorderBuffer, ReorderOverflow
from pose import camera
from pose.angles import ANGLE_KEYS
from pose.skeleton import CANONICAL_JOINTS
from stages import runtime
from tracking.iou import IouTracker


@dataclass
class Job:
    """One job's publishing state."""

    id: str
    tracker: IouTracker
    start: dict | None = None  # job_start from decode, once it arrived
    end: dict | None = None  # job_end from decode: how many frames to expect
    started: bool = False  # job_start published
    published: int = 0
    with_person: int = 0
    timestamps: dict = field(default_factory=dict)  # index -> stage timestamps
    out_file: object = None


def public_job_start(start: dict) -> dict:
    """Decode's job_start plus what a backend needs to read the arrays."""
    return {
        **start,
        "detector": start.get("options", {}).get("detector", "unknown"),
        "joints": {"keypoints_2d": list(CANONICAL_JOINTS), "keypoints_3d": list(CANONICAL_JOINTS)},
        "angles": list(ANGLE_KEYS),
        "intrinsics": dict(zip(("fx", "fy", "cx", "cy"), _intrinsics(start["width"], start["height"]))),
    }


def _intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    K = camera.intrinsics(width, height)
    return K[0, 0], K[1, 1], K[0, 2], K[1, 2]


class TrackStage:
    def __init__(self, results: zmq.Socket, status: zmq.Socket | None, out_dir: Path | None,
                 wait_subscribers: int, log):
        self.results = results
        self.status = status
        self.out_dir = out_dir
        self.wait_subscribers = wait_subscribers
        self.subscriptions = 0
        self.gate_open = wait_subscribers <= 0  # opens once, at the N-th subscription
        self.log = log
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []  # jobs in the order decode started them
        self.reorder = ReorderBuffer()

    def job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            self.jobs[job_id] = Job(job_id, IouTracker())
            self.order.append(job_id)
        return self.jobs[job_id]

    # --- inputs ------------------------------------------------------------
    def on_subscription(self, frame: bytes) -> None:
        if frame[:1] == b"\x01":
            self.subscriptions += 1
        elif frame[:1] == b"\x00":
            self.subscriptions -= 1
        self.gate_open = self.gate_open or self.subscriptions >= self.wait_subscribers

    def on_event(self, message: dict) -> None:
        job = self.job(message["job"])
        if message["type"] == "job_start":
            job.start = message
        else:
            job.end = message

    def on_detections(self, message: dict) -> None:
        job = self.job(message["job"])
        try:
            if not self.reorder.add(job.id, message["index"], message):
                self.log.warning("job %s: duplicate frame %d dropped", job.id, message["index"])
        except ReorderOverflow as exc:
            self.log.error("%s", exc)

    # --- output ------------------------------------------------------------
    def publish(self, job: Job, message: dict) -> None:
        sockets.send(self.results, message)
        if job.out_file is not None:
            job.out_file.write(json.dumps(codec.to_json_compatible(message)) + "\n")

    def pump(self) -> None:
        """Publish whatever is ready, head job first."""
        if not self.gate_open:
            return
        while self.order:
            job = self.jobs[self.order[0]]
            if not job.started:
                if job.start is None and job.end is None:
                    return
                if job.start is not None:
                    if self.out_dir is not None:
                        self.out_dir.mkdir(parents=True, exist_ok=True)
                        job.out_file = open(self.out_dir / f"{job.id}.jsonl", "w")
                    self.publish(job, public_job_start(job.start))
                job.started = True
            for index, detections in self.reorder.ready(job.id):
                job.timestamps[index] = detections.get("timestamps", {})
                for tracked in job.tracker.push(messages.frame_detections(detections)):
                    self.publish_frame(job, tracked)
            if job.end is None or self.reorder.next_index(job.id) < job.end["frames"]:
                return
            for tracked in job.tracker.finish():
                self.publish_frame(job, tracked)
            self.finish(job)

    def publish_frame(self, job: Job, tracked) -> None:
        people = [messages.person(p.track_id, p.state, p.confidence, p.frames_since_seen, p.detection)
                  for p in tracked.people]
        message = messages.frame(job.id, tracked.index, tracked.pts_ms, people)
        message["timestamps"] = {**job.timestamps.pop(tracked.index, {}), "published": time.time()}
        self.publish(job, message)
        job.published += 1
        job.with_person += bool(people)
        if self.status is not None:
            sockets.send(self.status, messages.progress(job.id, job.published, job.with_person))

    def finish(self, job: Job) -> None:
        error = job.end.get("error")
        if job.published != job.end["frames"] and not error:
            error = f"published {job.published} of {job.end['frames']} frames"
        end = messages.job_end(job.id, job.published, error)
        self.publish(job, end)
        if job.out_file is not None:
            job.out_file.close()
        if self.status is not None:  # last: the launcher may stop the stages when it sees this
            sockets.send(self.status, end)
        self.log.info("job %s: published %d frames, %s", job.id, job.published, end["status"])
        self.reorder.forget(job.id)
        del self.jobs[job.id]
        self.order.pop(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.track", description=__doc__.split("\n")[0])
    parser.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                        help="hold publishing until N subscriptions have arrived")
    parser.add_argument("--out", type=Path, metavar="DIR", help="also write each job to DIR/<job>.jsonl")
    parser.add_argument("--status", metavar="ENDPOINT", help="send progress to the launcher here")
    runtime.add_endpoint_flags(parser, "detections", "events", "results")
    runtime.log_level_flag(parser)
    args = parser.parse_args(argv)
    log = runtime.start("track", args.log_level)

    ctx = zmq.Context()
    detections = sockets.bind(ctx, "detections", args.detections)
    events = sockets.bind(ctx, "events", args.events)
    results = sockets.bind(ctx, "results", args.results)
    status = sockets.connect(ctx, "status", args.status) if args.status else None
    stage = TrackStage(results, status, args.out, args.wait_subscribers, log)
    bad = sockets.Counter("track")
    poller = zmq.Poller()
    for sock in (detections, events, results):
        poller.register(sock, zmq.POLLIN)
    try:
        while True:
            ready = dict(poller.poll())
            if results in ready:
                stage.on_subscription(results.recv())
            for sock, expected, handle in ((events, ("job_start", "job_end"), stage.on_event),
                                           (detections, ("detections",), stage.on_detections)):
                if sock in ready:
                    try:
                        handle(sockets.receive(sock, expected))
                    except ValueError as exc:
                        bad.drop(exc)
            stage.pump()
    except KeyboardInterrupt:
        pass
    finally:
        ctx.destroy(linger=2000)


if __name__ == "__main__":
    runtime.run(main)
