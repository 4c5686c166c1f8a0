"""No frame is lost when a detect worker dies or hangs; a frame nobody can detect is published as failed."""
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from bench.spooled import Spooled
from bus import messages, sockets
from bus.client import Control
from bus.joblog import JobLogs
from launcher.monitor import overdue

from conftest import (
    ROOT,
    VIDEO,
    Collector,
    alive,
    children,
    failing_detector,
    final_state,
    free_port,
    run_job,
    serving,
    stop,
)


def detect_workers(launcher_pid: int) -> list[int]:
    return [pid for pid in children(launcher_pid)
            if b"stages.detect" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.parametrize("run", range(10))
def test_kill_9_of_a_worker_loses_no_frame(endpoint, run):
    rng = random.Random(run)
    # Workers finish detecting some 30 frames before they are published (decode runs ahead, then the
    # look-ahead): killed later, a worker would hold nothing to lose.
    kill_at = rng.randint(5, 150)
    collector = Collector(endpoint)
    collector.start()
    launcher = Spooled([sys.executable, "launch.py", str(VIDEO), "--results", endpoint, "--wait-subscribers", "1",
                        "--workers", "2"], cwd=ROOT, text=True)
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
    with track_stage_alone(tmp_path) as track:
        collector = Collector(track.results, timeout_ms=60_000)
        collector.start()
        time.sleep(0.5)  # the subscription reaches the XPUB
        sockets.send(track.events, messages.job_start("j", "clip", 30.0, 64, 48, 6))
        for index in (0, 1, 2, 4, 5):
            track.detected(index, time.time())
        sockets.send(track.events, messages.job_end("j", 6))
        published = collector.result(60)
    frames = [m for m in published if m["type"] == "frame"]
    assert [f["index"] for f in frames] == list(range(6))
    assert [f["detection_failed"] for f in frames] == [False, False, False, True, False, False]
    assert published[-1]["status"] == "ok"


def test_a_run_chattier_than_a_pipe_holds_does_not_stall(tmp_path):
    """A detector failing each frame with a long error: every failed batch logs it, far more than the 64 KiB
    a pipe holds. The launcher's stderr (which its stages share) must not be a pipe read only at the end."""
    env = failing_detector(tmp_path / "inject", "injected failure: " + "x" * 2000)
    with serving("--workers", "2", env=env) as (server, control_endpoint, results, _):
        control = Control(control_endpoint, timeout_ms=20_000)
        published = run_job(control, results, VIDEO, "chatty")
        control.close()
        said = server.said()
    assert len(said.encode()) > 64 * 1024, said[-2000:]
    frames = [m for m in published if m["type"] == "frame"]
    assert [f["index"] for f in frames] == list(range(180))
    assert all(f["detection_failed"] for f in frames)
    assert published[-1]["status"] == "error" and "detection failed on all 180 frames" in published[-1]["error"]


@dataclass
class TrackAlone:
    results: str  # the stage's results endpoint
    events: zmq.Socket  # job_start / job_end to it
    detected: Callable[[int, float], None]  # (index, decode time): an empty detection of job "j"
    next_resend: Callable[[float], list[int] | None]  # the next resend request within a timeout, if any


@contextmanager
def track_stage_alone(tmp_path):
    """A track stage on ipc links, with the test standing in for decode and the workers."""
    ends = {name: f"ipc://{tmp_path}/{name}" for name in ("detections", "events", "acks", "history")}
    results = f"tcp://127.0.0.1:{free_port()}"
    track = subprocess.Popen([sys.executable, "-m", "stages.track", "--results", results,
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
            ack = sockets.receive(acks, "acks")
            if ack["resend"]:
                return ack["resend"]
        return None

    try:
        time.sleep(0.5)
        yield TrackAlone(results, events, detected, next_resend)
    finally:
        track.send_signal(signal.SIGTERM)
        track.wait(10)
        ctx.destroy(linger=0)


def test_a_frame_a_dead_worker_held_is_asked_for_while_the_other_workers_go_on(tmp_path):
    """Frame 2 never comes while frames after it keep coming: waiting for silence would wait as long as
    the job lasts (decode's in-flight window), so the frame is asked for on its own."""
    with track_stage_alone(tmp_path) as track:
        sockets.send(track.events, messages.job_start("j", "clip", 30.0, 64, 48, 200))
        asked, index = None, 0
        for index in [0, 1, *range(3, 200)]:
            track.detected(index, time.time())
            if (asked := track.next_resend(0.1)) is not None:
                break
    assert asked == [2] and index < 199  # asked while the others still came


def test_a_late_resent_frame_does_not_put_off_asking_for_the_next(tmp_path):
    """A resent frame keeps its first decode time; taken as the detection latency it would make the track
    stage wait 4 x that long before asking again (here a minute-old frame: 24 s instead of 2 s)."""
    with track_stage_alone(tmp_path) as track:
        sockets.send(track.events, messages.job_start("j", "clip", 30.0, 64, 48, 6))
        for index in (0, 1, 4, 5):
            track.detected(index, time.time())
        sockets.send(track.events, messages.job_end("j", 6))
        assert track.next_resend(15) == [2, 3]
        track.detected(2, time.time() - 60)  # decode resent it as it first sent it, a minute ago
        assert track.next_resend(12) == [3]


def test_overdue_stages_are_those_silent_past_the_timeout_or_past_start_up_without_any_heartbeat():
    started = {"decode": 0.0, "track": 0.0, "detect-0": 0.0, "detect-1": 95.0, "detect-2": 0.0}
    heard = {"decode": 99.0, "track": 60.0, "detect-0": 69.0}  # detect-1 and detect-2: none yet
    late = overdue(started, heard, now=100.0, timeout=30.0, startup_grace=90.0)
    assert late == {"track": 40.0, "detect-0": 31.0, "detect-2": 100.0}
    assert overdue(started, heard, now=100.0, timeout=120.0, startup_grace=90.0) == {}
    # A timeout longer than the start-up grace applies to start-up too.
    assert overdue({"detect-0": 0.0}, {}, now=100.0, timeout=101.0, startup_grace=10.0) == {}
    # The watcher was itself stopped until 90: nobody listened, so only the 10 s since count.
    assert overdue(started, heard, now=100.0, timeout=30.0, startup_grace=90.0, listening_since=90.0) == {}
    assert overdue(started, heard, now=125.0, timeout=30.0, startup_grace=90.0, listening_since=90.0) == {
        "track": 35.0, "detect-0": 35.0}


def wait_for(condition, what: str, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.mark.parametrize("workers", [2, 1])
def test_a_stopped_worker_is_killed_and_replaced_and_the_job_loses_no_frame(endpoint, tmp_path, workers):
    """SIGSTOP: the worker is alive but sends nothing; the launcher's watchdog must notice. With one worker,
    decode waits on it meanwhile, which must not count as hanging."""
    control_endpoint = f"tcp://127.0.0.1:{free_port()}"
    with open(tmp_path / "stderr", "w") as stderr:
        server = subprocess.Popen([sys.executable, "launch.py", "serve", "--results", endpoint, "--control",
                                   control_endpoint, "--workers", str(workers), "--heartbeat-timeout", "5",
                                   "--wait-subscribers", "1", "--job-log", str(tmp_path)], cwd=ROOT, stderr=stderr)
    control = Control(control_endpoint, timeout_ms=20_000)
    try:
        ready = wait_for(lambda: (h := control.health())["ok"] and all(
            p["since_heartbeat_s"] is not None for p in h["processes"].values()) and h, "every stage's heartbeat")
        name = f"detect-{workers - 1}"
        assert ready["heartbeat_timeout_s"] == 5 and set(ready["processes"]) == {
            "decode", "track", *(f"detect-{i}" for i in range(workers))}
        victim = ready["processes"][name]["pid"]
        collector = Collector(endpoint)
        collector.start()
        control.submit(str(VIDEO), job="stopped-worker")
        wait_for(lambda: sum(m["type"] == "frame" for m in collector.messages) >= 30, "30 frames")
        os.kill(victim, signal.SIGSTOP)
        published = collector.result(180)
        replaced = wait_for(lambda: (p := control.health()["processes"][name])["pid"] != victim and p,
                            f"{name} replaced")
        health = control.health()
    finally:
        control.close()
        stop(server)
    assert [m["index"] for m in published if m["type"] == "frame"] == list(range(180))  # in order, no duplicates
    assert published[-1]["type"] == "job_end" and published[-1]["status"] == "ok"
    assert replaced["alive"] and health["restarts"][name] == 1 and health["stages"][name]
    assert [health["processes"][stage]["pid"] for stage in ("decode", "track")] == [
        ready["processes"][stage]["pid"] for stage in ("decode", "track")]  # only the stopped one was killed
    assert not alive(victim)
    killed = rf"{name} \(pid {victim}\) sent no heartbeat for \d+ s; killing it"
    assert re.search(killed, (tmp_path / "stderr").read_text())


def test_a_stopped_track_stage_fails_its_job_with_a_clear_error_and_serve_runs_the_next(endpoint, tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(VIDEO))
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.jpg"), capture.read()[1])
    control_endpoint = f"tcp://127.0.0.1:{free_port()}"
    with open(tmp_path / "stderr", "w") as stderr:
        # One job at a time: the next waits in the launcher's queue (a job running beside it would fail with it).
        server = subprocess.Popen([sys.executable, "launch.py", "serve", "--results", endpoint, "--control",
                                   control_endpoint, "--heartbeat-timeout", "5", "--wait-subscribers", "1",
                                   "--max-jobs", "1", "--job-log", str(tmp_path)], cwd=ROOT, stderr=stderr)
    control = Control(control_endpoint, timeout_ms=20_000)
    collector = Collector(endpoint, jobs=2)
    collector.start()
    try:
        track = wait_for(lambda: (h := control.health())["ok"] and h["processes"]["track"]["since_heartbeat_s"]
                         is not None and h["processes"]["track"]["pid"], "the track stage's heartbeat")
        control.submit(str(VIDEO), job="track-stopped")
        wait_for(lambda: sum(m["type"] == "frame" for m in collector.messages) >= 10, "10 frames")
        os.kill(track, signal.SIGSTOP)
        control.submit(str(folder), job="after")
        published = collector.result(120)
        stopped, after = control.status("track-stopped"), final_state(control, "after")
        health = control.health()
    finally:
        control.close()
        stop(server, 30, stderr=tmp_path / "stderr")
    error = re.fullmatch(r"stage stopped: track \(no heartbeat for \d+ s\)", stopped["error"] or "")
    assert stopped["state"] == "failed" and error, stopped
    ends = [m for m in published if m["type"] == "job_end"]
    assert [(m["job"], m["status"], m["error"]) for m in ends] == [("track-stopped", "error", stopped["error"]),
                                                                    ("after", "ok", None)]
    assert [m["index"] for m in published if m["job"] == "after" and m["type"] == "frame"] == list(range(5))
    assert after == "done" and health["processes"]["track"]["pid"] != track and health["stages"]["track"]
    assert not alive(track)
    # What a replay of the failed job serves: what the subscriber got live and its job_end, and perhaps a few
    # more that the stopped stage had logged but not yet sent when it was killed.
    logged = [(m["type"], m.get("index")) for m in JobLogs(tmp_path).messages("track-stopped")]
    live = [(m["type"], m.get("index")) for m in published if m["job"] == "track-stopped"]
    assert logged[:len(live) - 1] == live[:-1] and logged[-1] == live[-1] == ("job_end", None)


def test_a_launcher_stopped_past_the_heartbeat_timeout_kills_no_stage_when_it_resumes(endpoint):
    """Ctrl-Z on the launcher: the stages kept beating into its queue, none of them hung."""
    control_endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = Spooled([sys.executable, "launch.py", "serve", "--results", endpoint, "--control", control_endpoint,
                      "--heartbeat-timeout", "2"], cwd=ROOT, text=True)
    control = Control(control_endpoint, timeout_ms=20_000)
    try:
        before = wait_for(lambda: (h := control.health())["ok"] and all(
            p["since_heartbeat_s"] is not None for p in h["processes"].values()) and h, "every stage's heartbeat")
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(5)
        os.kill(server.pid, signal.SIGCONT)
        time.sleep(3)  # a few watchdog rounds after it resumed
        after = control.health()
    finally:
        control.close()
        stderr = stop(server)
    assert after["ok"] and not any(after["restarts"].values())
    assert {name: p["pid"] for name, p in after["processes"].items()} == {
        name: p["pid"] for name, p in before["processes"].items()}
    assert "killing it" not in stderr
