"""Several jobs at once in ``launch.py serve``: each gets every frame once and in order, whatever the others do
(a cancel, a broken source, a worker killed mid-way, a live job served ahead of it)."""
import argparse
import logging
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from bus import messages, sockets
from bus.client import Control
from bus.metrics import StageMetrics
from stages.decode import FairFrames, JobQueue, Lane, LaneMetrics, Lanes

from conftest import VIDEO, Collector, children, serving

FRAMES = 180  # vid.mp4


def frames_of(published: list[dict], job: str) -> list[int]:
    return [m["index"] for m in published if m["job"] == job and m["type"] == "frame"]


def end_of(published: list[dict], job: str) -> dict:
    (end,) = [m for m in published if m["job"] == job and m["type"] == "job_end"]
    return end


def position(published: list[dict], job: str, kind: str) -> int:
    return next(i for i, m in enumerate(published) if m["job"] == job and m["type"] == kind)


def image_folder(folder: Path, count: int, broken_at: int | None = None) -> Path:
    """The first ``count`` frames of vid.mp4 as JPEG files; with ``broken_at``, that one is not an image."""
    folder.mkdir()
    capture = cv2.VideoCapture(str(VIDEO))
    for index in range(count):
        path = folder / f"{index:03d}.jpg"
        image = capture.read()[1]
        if index == broken_at:
            path.write_bytes(b"not a JPEG")
        else:
            cv2.imwrite(str(path), image)
    capture.release()
    return folder


def wait_for(condition, what, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)
    return value


def test_fair_frames_serves_live_jobs_first_then_jobs_in_turn():
    fair = FairFrames()
    for index in range(3):
        fair.add({"job": "a", "index": index})
    for index in range(2):
        fair.add({"job": "b", "index": index})
    fair.add({"job": "live", "index": 0}, live=True)
    order = [(m["job"], m["index"]) for m in iter(fair.next, None)]
    assert order == [("live", 0), ("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    fair.add({"job": "a", "index": 3})
    fair.add({"job": "live", "index": 1}, live=True)
    fair.forget("live")  # ended: its last frame still goes, as a file job's (the least served)
    assert [(m["job"], m["index"]) for m in iter(fair.next, None)] == [("live", 1), ("a", 3)]
    assert len(fair) == 0


def test_decode_sends_a_frame_a_lane_resent_just_before_it_ended():
    """A lane answers the track stage's last resend request, then its job is over: the stage's loop, which
    had sent the job's job_end already, still deals that frame out (it failed with a KeyError, and decode
    died: seen at the end of an HMR 2.0 run whose slow first batch made the track stage ask again)."""
    ctx = zmq.Context()
    try:
        frames = sockets.bind(ctx, "frames", "inproc://frames")
        worker = sockets.connect(ctx, "frames", "inproc://frames")
        track = sockets.bind(ctx, "events", "inproc://events")
        events = sockets.connect(ctx, "events", "inproc://events")
        queue = JobQueue(sockets.bind(ctx, "jobs", "inproc://jobs"), events, sockets.Counter("decode"))
        lanes = Lanes(ctx, argparse.Namespace(), lambda request: frames, events, None, queue,
                      logging.getLogger("posebus.test"), StageMetrics("decode", "decode"))
        lanes.pool_of["j"] = lanes.pools.setdefault(frames, FairFrames())
        lanes.ended.add("j")  # its job_end has gone to the track stage

        def resend_then_end():
            out = sockets.connect(ctx, "lanes")
            sockets.send(out, messages.image("j", 3, 100.0, np.zeros((4, 4, 3), np.uint8)))
            out.close(linger=-1)

        lane = threading.Thread(target=resend_then_end)
        lane.start()
        lane.join()
        lanes.lanes["j"] = Lane(lane, None, LaneMetrics())
        lanes.reap()
        lanes.step(0)
        assert worker.poll(5000), "the resent frame did not go to a worker"
        resent = sockets.receive(worker, "frames")
        assert (resent["job"], resent["index"]) == ("j", 3)
        assert "j" not in lanes.lanes and "j" not in lanes.pool_of
        assert not track.poll(0)  # nothing more for the track stage
    finally:
        ctx.destroy(linger=0)


def test_fair_frames_lets_a_job_submitted_later_catch_up_before_sharing():
    fair = FairFrames()
    for index in range(4):
        fair.add({"job": "long", "index": index})
    assert [m["index"] for m in (fair.next(), fair.next())] == [0, 1]
    for index in range(3):
        fair.add({"job": "short", "index": index})
    order = [(m["job"], m["index"]) for m in iter(fair.next, None)]
    assert order == [("short", 0), ("short", 1), ("long", 2), ("short", 2), ("long", 3)]


def test_fair_frames_sends_a_frame_asked_for_again_first_and_never_queues_one_twice():
    fair = FairFrames()
    for index in range(3):
        fair.add({"job": "a", "index": index})
    assert fair.next()["index"] == 0
    fair.add({"job": "a", "index": 2})  # still waiting: not twice
    fair.add({"job": "a", "index": 0})  # sent before, lost with a worker: ahead of the job's new frames
    assert [m["index"] for m in iter(fair.next, None)] == [0, 1, 2] and fair.waiting("a") == 0
    for index in (3, 4, 2, 0):
        fair.add({"job": "a", "index": index})
    assert [m["index"] for m in iter(fair.next, None)] == [0, 2, 3, 4]


@pytest.mark.parametrize("jobs", [2, 4])
def test_concurrent_jobs_each_publish_every_frame_in_order(jobs):
    with serving("--workers", "2", "--max-jobs", str(jobs), "--wait-subscribers", "1") as (_, endpoint, results, _):
        collector = Collector(results, jobs=jobs, timeout_ms=300_000)
        collector.start()
        control = Control(endpoint, timeout_ms=20_000)
        names = [f"copy-{i}" for i in range(jobs)]
        for name in names:
            control.submit(str(VIDEO), job=name)
        assert {control.status(name)["state"] for name in names} == {"running"}  # none waits for another
        published = collector.result(600)
        deadline = time.monotonic() + 10  # status learns of a job_end on its own link: it can lag a moment
        while (states := [control.status(name)["state"] for name in names]) != ["done"] * jobs \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        control.close()
    for name in names:
        assert frames_of(published, name) == list(range(FRAMES)), name  # every frame once, in order
        assert end_of(published, name)["status"] == "ok" and end_of(published, name)["frames"] == FRAMES
    # Side by side, not one after another: every job had started publishing before any ended.
    first_end = min(position(published, name, "job_end") for name in names)
    assert all(position(published, name, "job_start") < first_end for name in names)
    assert states == ["done"] * jobs


def test_jobs_beyond_max_jobs_wait_in_submission_order_with_their_queue_position(tmp_path):
    short = image_folder(tmp_path / "short", 10)
    with serving("--workers", "2", "--max-jobs", "2", "--wait-subscribers", "1") as (_, endpoint, results, _):
        collector = Collector(results, jobs=4, timeout_ms=300_000)
        collector.start()
        control = Control(endpoint, timeout_ms=20_000)
        for name, source in (("long-1", VIDEO), ("long-2", VIDEO), ("third", short), ("fourth", short)):
            control.submit(str(source), job=name)
        waiting = [control.status(name) for name in ("third", "fourth")]
        published = collector.result(600)
        listed = {job["id"]: job for job in control.list()["jobs"]}
        control.close()
    assert [(s["state"], s["queue_position"]) for s in waiting] == [("queued", 1), ("queued", 2)]
    assert frames_of(published, "third") == frames_of(published, "fourth") == list(range(10))
    assert all(frames_of(published, name) == list(range(FRAMES)) for name in ("long-1", "long-2"))
    # The third starts once a long one has ended, the fourth after the third has ended or a long one has.
    assert position(published, "third", "job_start") > min(position(published, n, "job_end") for n in ("long-1",
                                                                                                       "long-2"))
    assert {job["state"] for job in listed.values()} == {"done"} and listed["third"]["queue_position"] is None


def test_a_cancelled_job_and_a_broken_source_disturb_no_other_job(tmp_path):
    broken = image_folder(tmp_path / "broken", 25, broken_at=20)
    with serving("--workers", "2", "--max-jobs", "3", "--wait-subscribers", "1") as (_, endpoint, results, _):
        collector = Collector(results, jobs=3, timeout_ms=300_000)
        collector.start()
        control = Control(endpoint, timeout_ms=20_000)
        control.submit(str(VIDEO), job="whole")
        control.submit(str(VIDEO), job="cancelled")
        control.submit(str(broken), job="broken")
        wait_for(lambda: len(frames_of(collector.messages, "cancelled")) >= 20, "20 frames of the job to cancel")
        assert control.cancel("cancelled")["ok"]
        published = collector.result(600)
        states = {name: control.status(name) for name in ("whole", "cancelled", "broken")}
        control.close()
    assert frames_of(published, "whole") == list(range(FRAMES)) and end_of(published, "whole")["status"] == "ok"
    cancelled = frames_of(published, "cancelled")
    assert cancelled == list(range(len(cancelled))) and len(cancelled) < FRAMES  # in order, then it stopped
    assert end_of(published, "cancelled")["error"] == "cancelled"
    assert frames_of(published, "broken") == list(range(20))  # every frame before the broken one
    assert "cannot decode image" in end_of(published, "broken")["error"]
    assert [states[name]["state"] for name in ("whole", "cancelled", "broken")] == ["done", "failed", "failed"]


def test_a_worker_killed_during_three_concurrent_jobs_loses_no_frame_of_any():
    with serving("--workers", "2", "--max-jobs", "3", "--wait-subscribers", "1") as (server, endpoint, results, _):
        collector = Collector(results, jobs=3, timeout_ms=300_000)
        collector.start()
        control = Control(endpoint, timeout_ms=20_000)
        names = ("first", "second", "third")
        for name in names:
            control.submit(str(VIDEO), job=name)
        # Mid-way through all three: each has published some frames, none has ended.
        wait_for(lambda: all(len(frames_of(collector.messages, name)) >= 20 for name in names),
                 lambda: f"20 frames each (published: {[len(frames_of(collector.messages, n)) for n in names]})", 300)
        victim = next(pid for pid in children(server.pid)
                      if b"stages.detect" in Path(f"/proc/{pid}/cmdline").read_bytes())
        subprocess.run(["kill", "-9", str(victim)], check=True)
        published = collector.result(600)
        restarts = control.health()["restarts"]
        control.close()
    for name in names:
        assert frames_of(published, name) == list(range(FRAMES)), name
        assert end_of(published, name)["status"] == "ok"
    assert sum(restarts.values()) == 1


def test_a_live_job_runs_beside_a_file_job_paced_and_served_first(tmp_path):
    live = image_folder(tmp_path / "live", 60)  # paced like a camera at 30 fps: 2 s
    with serving("--workers", "2", "--max-jobs", "2", "--wait-subscribers", "1") as (_, endpoint, results, _):
        collector = Collector(results, jobs=2, timeout_ms=300_000)
        collector.start()
        control = Control(endpoint, timeout_ms=20_000)
        control.submit(str(VIDEO), job="file")
        control.submit(str(live), job="live", realtime=True)
        published = collector.result(600)
        control.close()
    assert frames_of(published, "file") == list(range(FRAMES)) and end_of(published, "file")["status"] == "ok"
    assert frames_of(published, "live") == list(range(60)) and end_of(published, "live")["status"] == "ok"
    decoded = [m["timestamps"]["decoded"] for m in published if m["job"] == "live" and m["type"] == "frame"]
    assert decoded[-1] - decoded[0] >= 59 / 30 - 0.05  # paced at its frame rate, not as fast as it decodes
    # Side by side: the live job published while the file job was publishing.
    assert position(published, "file", "job_start") < position(published, "live", "job_end") < position(
        published, "file", "job_end")


def test_an_hmr2_worker_puts_the_crops_of_several_jobs_frames_through_one_forward():
    pytest.importorskip("torch")
    import logging

    import numpy as np

    from bus import messages
    from detectors.hmr2.detector import Hmr2Detector, PersonBoxes
    from stages.detect import detect_batch

    checkpoint = VIDEO.parents[1] / "fixtures" / "hmr2" / "small_checkpoint.ckpt"
    if not checkpoint.exists():
        pytest.skip(f"{checkpoint} not found (the shared fixtures folder)")

    class TwoPeople:
        """Two boxes in every frame, the box step called once per worker batch."""

        calls: list[int] = []

        def __call__(self, frames):
            self.calls.append(len(frames))
            return [PersonBoxes(np.float32([[600, 200, 800, 700], [100, 100, 300, 600]]), np.ones(2, np.float32))
                    for _ in frames]

        def close(self):
            pass

    detector = Hmr2Detector(checkpoint, box_source=TwoPeople(), batch_size=16)
    forwards = []
    forward = detector.model.forward
    detector.model.forward = lambda crops: forwards.append(len(crops)) or forward(crops)
    capture = cv2.VideoCapture(str(VIDEO))
    images = [capture.read()[1] for _ in range(2)]
    capture.release()
    batch = [messages.image(job, index, index * 33.3, images[index]) for index in range(2) for job in ("a", "b")]
    replies = detect_batch(detector, batch, "worker", logging.getLogger("posebus.test"))
    assert forwards == [8] and TwoPeople.calls == [4]  # 4 frames of 2 jobs: one box call, one forward of 8 crops
    assert [(r["job"], r["index"], len(r["people"])) for r in replies] == [("a", 0, 2), ("b", 0, 2), ("a", 1, 2),
                                                                           ("b", 1, 2)]
