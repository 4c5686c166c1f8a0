"""The whole pipeline, as separate processes, on the real clip."""
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.spooled import Spooled
from pose.angles import ANGLE_KEYS
from pose.skeleton import CANONICAL_JOINTS, JOINT_INDEX as J

from conftest import ROOT, VIDEO, Collector, alive, children, failing_detector, final_state, launch, stop


def run_and_collect(endpoint, *args):
    collector = Collector(endpoint)
    collector.start()
    result = launch(VIDEO, "--results", endpoint, "--wait-subscribers", "1", *args)
    return result, collector.result()


def check_complete_run(messages, frames=180):
    events = [m for m in messages if m["type"] == "track_event"]
    assert [(e["event"], e["track_id"]) for e in events][:2] == [("born", 1), ("confirmed", 1)]
    assert all(e["index"] <= frames for e in events)
    messages[:] = [m for m in messages if m["type"] != "track_event"]
    kinds = [m["type"] for m in messages]
    assert kinds == ["job_start"] + ["frame"] * frames + ["job_end"]
    start, end = messages[0], messages[-1]
    assert (start["width"], start["height"], start["fps"], start["frame_count"]) == (1920, 1088, 30.0, 180)
    assert start["joints"]["keypoints_3d"] == list(CANONICAL_JOINTS)
    assert start["angles"] == list(ANGLE_KEYS)
    assert [m["index"] for m in messages[1:-1]] == list(range(frames))
    assert all(b["pts_ms"] > a["pts_ms"] for a, b in zip(messages[1:-2], messages[2:-1]))
    assert end == {**end, "frames": frames, "status": "ok", "error": None}
    assert len({m["job"] for m in messages}) == 1


def check_runner_in_every_frame(messages, single_track=True):
    """The runner is first in every frame. With several workers BlazePose's video mode restarts at
    gaps, so a re-detection can rarely start a second track: then most frames still hold one person."""
    one_person = sum(len(frame["people"]) == 1 for frame in messages[1:-1])
    assert one_person == 180 if single_track else one_person >= 0.95 * 180
    for frame in messages[1:-1]:
        person = frame["people"][0]
        if single_track:
            assert person["state"] == "observed" and person["track_id"] == 1
        assert person["keypoints_2d"].shape == person["keypoints_3d"].shape == (len(CANONICAL_JOINTS), 3)
        assert person["joint_angles"]["leftKnee"] is not None and 20 < person["joint_angles"]["leftKnee"] <= 180
        kp = person["keypoints_2d"]
        x, y, w, h = person["bbox"]
        assert x <= kp[J["left_knee"], 0] <= x + w and y <= kp[J["left_knee"], 1] <= y + h


def test_one_worker_publishes_every_frame_in_order(endpoint, tmp_path):
    result, messages = run_and_collect(endpoint, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"posebus: job \w+: 180 frames, person in 180, detection failed on 0\n", result.stderr)
    check_complete_run(messages)
    check_runner_in_every_frame(messages)
    (written,) = tmp_path.glob("*.jsonl")
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    lines = [line for line in lines if line["type"] != "track_event"]
    assert len(lines) == 182 and lines[90]["index"] == 89
    np.testing.assert_allclose(np.array(lines[90]["people"][0]["keypoints_2d"], np.float32),
                               messages[90]["people"][0]["keypoints_2d"], rtol=1e-6)


def test_two_workers_publish_every_frame_in_order(endpoint):
    result, messages = run_and_collect(endpoint, "--workers", "2")
    assert result.returncode == 0, result.stderr
    check_complete_run(messages)
    check_runner_in_every_frame(messages, single_track=False)
    stamps = [m["timestamps"] for m in messages[1:-1]]
    assert all(s["decoded"] <= s["detected"] <= s["published"] for s in stamps)


def test_sigint_mid_job_stops_every_stage(endpoint):
    process = Spooled([sys.executable, "launch.py", str(VIDEO), "--results", endpoint], cwd=ROOT,
                      stdout=subprocess.DEVNULL, text=True)
    collector = Collector(endpoint)
    collector.start()
    deadline = time.monotonic() + 60
    while len(collector.messages) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    stages = children(process.pid)
    assert len(stages) == 3 and len(collector.messages) >= 20
    command_line = Path(f"/proc/{stages[0]}/cmdline").read_bytes().decode()
    ipc_folder = Path(re.search(r"ipc://(/[^\x00]*)/\w+", command_line).group(1))
    assert ipc_folder.is_dir()
    frame_rings = [ring for pid in stages for ring in Path("/dev/shm").glob(f"posebus-{pid}-*")]
    assert len(frame_rings) == 1  # decode's, for this job: local workers read frames in shared memory
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    process.wait(10)
    assert time.monotonic() - started < 5
    assert process.returncode == 130
    assert not [pid for pid in stages if alive(pid)]
    assert not ipc_folder.exists()
    assert not frame_rings[0].exists()


def test_launcher_killed_outright_takes_its_stages_along(endpoint):
    process = subprocess.Popen([sys.executable, "launch.py", str(VIDEO), "--results", endpoint],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(children(process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    stages = children(process.pid)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in stages) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in stages if alive(pid)]


def make_bad_inputs(folder):
    (folder / "empty").mkdir()
    (folder / "notes.mp4").write_text("not a video " * 100)
    (folder / "cut.mp4").write_bytes(VIDEO.read_bytes()[:500_000])
    return {
        "missing file": (folder / "missing.mp4", "no such file"),
        "not a video": (folder / "notes.mp4", "cannot open"),
        "truncated video": (folder / "cut.mp4", "cannot open"),
        "empty folder": (folder / "empty", "no images"),
    }


@pytest.mark.parametrize("case", ["missing file", "not a video", "truncated video", "empty folder"])
def test_bad_input_ends_the_job_with_an_error(endpoint, tmp_path, case):
    source, reason = make_bad_inputs(tmp_path)[case]
    collector = Collector(endpoint)
    collector.start()
    result = launch(source, "--results", endpoint, "--wait-subscribers", "1", timeout=60)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("posebus: error")]
    assert len(error_lines) == 1 and reason in error_lines[0]
    assert "Traceback" not in result.stderr
    (end,) = collector.result(30)
    assert end["type"] == "job_end" and end["status"] == "error" and reason in end["error"]


def test_a_run_whose_detector_fails_on_every_frame_exits_1_saying_so(endpoint, tmp_path):
    collector = Collector(endpoint)
    collector.start()
    result = launch(VIDEO, "--results", endpoint, "--wait-subscribers", "1", "--max-frames", "30", "--job", "blind",
                    env=failing_detector(tmp_path / "inject", "injected failure"))
    assert result.returncode == 1, result.stderr[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("posebus: error")]
    assert error_lines == ["posebus: error: job blind: detection failed on all 30 frames "
                           "(the detect stage's log says why)"]
    assert "injected failure" in result.stderr  # the detect stage's log says why
    published = collector.result(30)
    assert [m["detection_failed"] for m in published if m["type"] == "frame"] == [True] * 30
    end = published[-1]  # every frame was published, and the job says what went wrong, live and to serve's backends
    assert end["type"] == "job_end" and end["status"] == "error" and end["frames"] == 30
    assert end["error"] == "detection failed on all 30 frames (the detect stage's log says why)"


def test_serve_keeps_serving_after_a_bad_job(endpoint, tmp_path):
    from bus.client import Control, subscribe

    from conftest import free_port

    control_endpoint = f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "frames").mkdir()
    import cv2

    capture = cv2.VideoCapture(str(VIDEO))
    for i in range(5):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.jpg"), capture.read()[1])
    server = Spooled([sys.executable, "launch.py", "serve", "--results", endpoint, "--control", control_endpoint],
                     cwd=ROOT, text=True)
    control = Control(control_endpoint, timeout_ms=20_000)
    try:
        bad = control.request(cmd="submit", source=str(tmp_path / "nope.mp4"))
        assert bad == {"ok": False, "error": f"no such file or folder: {tmp_path / 'nope.mp4'}"}
        assert control.request(cmd="explode")["ok"] is False
        huge = control.request(cmd="submit", source="x" * (70 * 1024 * 1024))
        assert huge["ok"] is False and "exceeds" in huge["error"]
        assert control.request(cmd="list")["ok"] is True  # still serving
        good_job = "folder-job"
        stream = subscribe(endpoint, job=good_job, timeout_ms=60_000)
        got = []
        reader = threading.Thread(target=lambda: got.extend(stream), daemon=True)
        reader.start()
        time.sleep(0.5)
        assert control.submit(str(tmp_path / "frames"), job=good_job) == good_job
        reader.join(60)
        assert [m["type"] for m in got if m["type"] != "track_event"] == ["job_start"] + ["frame"] * 5 + ["job_end"]
        assert got[-1]["status"] == "ok"
        assert final_state(control, good_job) == "done"
        assert all(control.request(cmd="health")["stages"].values())
    finally:
        control.close()
        stop(server)


SMALL_CHECKPOINT = VIDEO.parents[1] / "fixtures" / "hmr2" / "small_checkpoint.ckpt"


def test_hmr2_pipeline_with_the_small_checkpoint(endpoint, tmp_path):
    result, messages = run_and_collect(endpoint, "--detector", "hmr2", "--checkpoint", SMALL_CHECKPOINT,
                                       "--mesh", "--phalp-pkl", tmp_path / "phalp.pkl")
    assert result.returncode == 0, result.stderr
    start = messages[0]
    assert start["detector"] == "hmr2" and start["mesh_faces"].shape == (13776, 3)
    assert len(start["joints"]["keypoints_3d_native"]) == 44
    check_complete_run(messages)
    for frame in messages[1:-1]:
        person = frame["people"][0]
        assert person["smpl"]["body_pose"].shape == (23, 3, 3) and person["vertices"].shape == (6890, 3)
        assert person["keypoints_3d_native"].shape == (44, 3)
        assert person["camera"]["focal_length"] == 5000 / 256 * 1920
    import joblib

    phalp = joblib.load(tmp_path / "phalp.pkl")
    assert len(phalp) == 180


def test_hmr2_without_a_checkpoint_fails_before_reading_frames(tmp_path):
    result = launch(VIDEO, "--detector", "hmr2", "--cache-dir", tmp_path / "empty-cache", timeout=60,
                    env={**__import__("os").environ, "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "HMR 2.0 checkpoint not found" in result.stderr
    assert str(tmp_path / "empty-cache") in result.stderr and "hmr2_data.tar.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_cancels_a_running_job_and_takes_the_next(endpoint, tmp_path):
    from bus.client import Control, follow

    from conftest import free_port

    control_endpoint, history = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    server = Spooled([sys.executable, "launch.py", "serve", "--results", endpoint, "--history", history,
                      "--control", control_endpoint, "--realtime", "--job-log", str(tmp_path)], cwd=ROOT, text=True)
    control = Control(control_endpoint, timeout_ms=20_000)
    try:
        job = control.submit(str(VIDEO), job="to-cancel")
        stream = follow(endpoint, history, job, timeout_ms=60_000)
        seen = [next(stream) for _ in range(15)]  # job_start and the first frames
        assert control.cancel(job) == {"ok": True, "job": job}
        rest = list(stream)
        end = rest[-1]
        assert end["type"] == "job_end" and end["status"] == "error" and end["error"] == "cancelled"
        frames = [m["index"] for m in seen + rest if m["type"] == "frame"]
        assert frames == list(range(len(frames))) and len(frames) < 180 and end["frames"] == len(frames)
        assert control.status(job)["state"] == "failed" and control.cancel(job)["ok"] is False
        folder = tmp_path / "frames"
        folder.mkdir()
        import cv2

        cv2.imwrite(str(folder / "0.jpg"), cv2.VideoCapture(str(VIDEO)).read()[1])
        after = control.submit(str(folder), job="after")
        assert [m["type"] for m in follow(endpoint, history, after, timeout_ms=60_000)][-1] == "job_end"
        assert final_state(control, after) == "done", str(control.status(after))
    finally:
        control.close()
        stop(server)
