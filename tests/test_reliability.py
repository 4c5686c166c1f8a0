"""No frame is lost when a detect worker dies; a frame nobody can detect is published as failed."""
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from bus import messages, sockets
from conftest import ROOT, VIDEO, Collector, alive, children, free_port


def detect_workers(launcher_pid: int) -> list[int]:
    return [pid for pid in children(launcher_pid)
            if b"stages.detect" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.parametrize("run", range(10))
def test_kill_9_of_a_worker_loses_no_frame(endpoint, run):
    rng = random.Random(run)
    kill_at = rng.randint(5, 170)
    collector = Collector(endpoint)
    collector.start()
    launcher = subprocess.Popen([sys.executable, "launch.py", str(VIDEO), "--results", endpoint,
                                 "--wait-subscribers", "1", "--workers", "2"],
                                cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while sum(m["type"] == "frame" for m in collector.messages) < kill_at and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = rng.choice(detect_workers(launcher.pid))
        subprocess.run(["kill", "-9", str(victim)], check=True)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, stderr
    assert "restarted" in stderr
    published = collector.result()
    frames = [m["index"] for m in published if m["type"] == "frame"]
    assert frames == list(range(180))  # every frame, in order, no duplicates
    assert published[-1]["type"] == "job_end" and published[-1]["frames"] == 180 and published[-1]["status"] == "ok"
    assert not alive(victim)


def test_a_frame_never_detected_is_published_as_failed_after_bounded_tries(tmp_path):
    """The track stage alone, fed every detection but frame 3's, and no decode to resend it."""
    ends = {name: f"ipc://{tmp_path}/{name}" for name in ("detections", "events", "acks", "history")}
    results = f"tcp://127.0.0.1:{free_port()}"
    track = subprocess.Popen([sys.executable, "-m", "stages.track", "--results", results, "--job-log", str(tmp_path),
                              *[arg for name, ep in ends.items() for arg in (f"--{name}", ep)],
                              "--log-level", "error"], cwd=ROOT)
    collector = Collector(results, timeout_ms=60_000)
    collector.start()
    ctx = zmq.Context()
    events = sockets.connect(ctx, "events", ends["events"])
    detections = sockets.connect(ctx, "detections", ends["detections"])
    try:
        time.sleep(0.5)
        sockets.send(events, messages.job_start("j", "clip", 30.0, 64, 48, 6))
        for index in (0, 1, 2, 4, 5):
            sockets.send(detections, messages.detections("j", index, index * 33.3, []))
        sockets.send(events, messages.job_end("j", 6))
        published = collector.result(60)
    finally:
        track.send_signal(signal.SIGTERM)
        track.wait(10)
        ctx.destroy(linger=0)
    frames = [m for m in published if m["type"] == "frame"]
    assert [f["index"] for f in frames] == list(range(6))
    assert [f["detection_failed"] for f in frames] == [False, False, False, True, False, False]
    assert published[-1]["status"] == "ok"


def test_a_late_resent_frame_does_not_put_off_asking_for_the_next(tmp_path):
    """A resent frame keeps its first decode time; taken as the detection latency it would make the track
    stage wait 4 x that long before asking again (here a minute-old frame: 24 s instead of 2 s)."""
    ends = {name: f"ipc://{tmp_path}/{name}" for name in ("detections", "events", "acks", "history")}
    track = subprocess.Popen([sys.executable, "-m", "stages.track", "--results", f"tcp://127.0.0.1:{free_port()}",
                              "--job-log", str(tmp_path), "--log-level", "error",
                              *[arg for name, ep in ends.items() for arg in (f"--{name}", ep)]], cwd=ROOT)
    ctx = zmq.Context()
    events = sockets.connect(ctx, "events", ends["events"])
    detections = sockets.connect(ctx, "detections", ends["detections"])
    acks = sockets.connect(ctx, "acks", ends["acks"])

    def detected(index, decoded):
        message = messages.detections("j", index, index * 33.3, [])
        message["timestamps"] = {"decoded": decoded, "detected": time.time()}
        sockets.send(detections, message)

    def next_resend(timeout_s):
        deadline = time.monotonic() + timeout_s
        while acks.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            ack = sockets.receive(acks, ("ack",))
            if ack["resend"]:
                return ack["resend"]
        return None

    try:
        time.sleep(0.5)
        sockets.send(events, messages.job_start("j", "clip", 30.0, 64, 48, 6))
        for index in (0, 1, 4, 5):
            detected(index, time.time())
        sockets.send(events, messages.job_end("j", 6))
        assert next_resend(15) == [2, 3]
        detected(2, time.time() - 60)  # decode resent it as it first sent it, a minute ago
        assert next_resend(12) == [3]
    finally:
        track.send_signal(signal.SIGTERM)
        track.wait(10)
        ctx.destroy(linger=0)
