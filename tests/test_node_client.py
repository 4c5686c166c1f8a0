"""The Node.js client (clients/node): its own unit tests, then real pipeline runs followed from Node."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from bench.spooled import Spooled
from bus import codec
from bus.client import subscribe
from outputs.app_json import app_document
from pose.skeleton import CANONICAL_JOINTS

from clips import BLACK_FRAMES, late_rider_clip
from conftest import ROOT, VIDEO, free_port, launch, serving, stop

FRAMES = 180  # in VIDEO

CLIENT = ROOT / "clients" / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (the Node client needs Node.js 20+)")


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    if not (CLIENT / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT, check=True,
                       timeout=120)


def tcp_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def node(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([NODE, script, *map(str, args)], cwd=CLIENT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def summary_of(process: subprocess.Popen, timeout: float = 60) -> dict:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return json.loads(stdout)


def test_node_unit_tests_pass():
    result = subprocess.run([NODE, "--test", "test/"], cwd=CLIENT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# skipped 0" in result.stdout and "# fail 0" in result.stdout


def test_node_subscriber_receives_every_frame_of_a_run(tmp_path):
    endpoint, job = tcp_endpoint(), "node-run"
    collector = node("examples/collect.js", endpoint, job)  # subscribes first; the run waits for it
    try:
        # A free history port too: runs on the default one collide when tests run side by side.
        run = launch(VIDEO, "--results", endpoint, "--history", tcp_endpoint(), "--wait-subscribers", "1",
                     "--job", job, "--out", tmp_path, "--job-log", tmp_path / "logs", timeout=90)
        assert run.returncode == 0, run.stderr
        summary = summary_of(collector)
    finally:
        collector.kill()
    assert [t for t in summary["types"] if t != "track_event"] == ["job_start"] + ["frame"] * 180 + ["job_end"]
    assert summary["indices"] == list(range(180))
    assert summary["keypointArrays"] == ["Float32Array 25x3 aligned"] * 180
    assert summary["firstKeypoints"]["shape"] == [25, 3] and summary["firstKeypoints"]["dtype"] == "<f4"
    # The same numbers as the run's own JSON lines (both carry the float32 values exactly; NaN is null in both).
    lines = [json.loads(line) for line in (tmp_path / f"{job}.jsonl").read_text().splitlines()]
    first_frame = next(line for line in lines if line["type"] == "frame")
    assert summary["firstKeypoints"]["values"] == [v for row in first_frame["people"][0]["keypoints_3d"] for v in row]
    start, end = summary["jobStart"], summary["jobEnd"]
    assert (start["job"], start["fps"], start["frame_count"]) == (job, 30.0, 180)
    assert (end["frames"], end["status"], end["error"]) == (180, "ok", None)


def test_node_control_submits_and_follows_a_job(tmp_path):
    results, control = tcp_endpoint(), tcp_endpoint()
    server = Spooled([sys.executable, "launch.py", "serve", "--results", results, "--control", control,
                      "--history", tcp_endpoint(), "--job-log", tmp_path / "logs"], cwd=ROOT, text=True)
    try:
        summary = summary_of(node("examples/submit-and-follow.js", control, results, VIDEO), timeout=90)
    finally:
        stop(server)
    assert summary["submitted"] == summary["job"]
    assert summary["indices"] == list(range(180))
    status = summary["status"]
    assert (status["ok"], status["id"], status["state"], status["frames"]) == (True, summary["job"], "done", 180)
    assert all(summary["health"]["stages"].values())
    assert [j["id"] for j in summary["list"]["jobs"]] == [summary["job"]]


# --- follow: joining late, two at once, resuming after a kill (bus.client.follow's Clone pattern) -------------

def realtime_run(results: str, history: str, job: str, folder) -> subprocess.Popen:
    """A run paced like a camera (30 fps: 6 s for VIDEO) with its job log and --out file in ``folder``."""
    return Spooled([sys.executable, "launch.py", VIDEO, "--realtime", "--results", results, "--history", history,
                    "--job", job, "--job-log", folder / "logs", "--out", folder],
                   cwd=ROOT, stdout=subprocess.DEVNULL, text=True)


def wait_until_published(results: str, job: str, index: int) -> None:
    for message in subscribe(results, job=job, timeout_ms=30_000):
        if message["type"] == "frame" and message["index"] >= index:
            return
    raise AssertionError(f"job {job} ended before frame {index}")


def lines_of(process: subprocess.Popen, timeout: float = 30) -> list[dict]:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return [json.loads(line) for line in stdout.splitlines()]


def finished(run: subprocess.Popen) -> None:
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 0, stderr


@pytest.fixture(scope="module")
def late_followers(tmp_path_factory):
    """Two Node followers started together once a run has published half its frames: one prints every
    message's {type, index}, the other the frames in the app's shape. Gives (their lines, the --out file)."""
    folder = tmp_path_factory.mktemp("late")
    results, history, job = tcp_endpoint(), tcp_endpoint(), "node-late"
    run = realtime_run(results, history, job, folder)
    followers = []
    try:
        wait_until_published(results, job, FRAMES // 2 - 1)
        followers = [node("examples/follow.js", results, history, job),
                     node("examples/follow.js", results, history, job, 0, "--app")]
        lines = [lines_of(follower) for follower in followers]
        finished(run)
    finally:
        for process in (run, *followers):
            process.kill()
    return lines, folder / f"{job}.jsonl"


def test_node_followers_joining_late_get_every_frame_by_replay(late_followers):
    (messages, app_frames), _ = late_followers
    assert [m for m in messages if m["type"] != "track_event"] == (
        [{"type": "job_start", "index": None}] + [{"type": "frame", "index": i} for i in range(FRAMES)]
        + [{"type": "job_end", "index": None}])
    assert [frame["frameNumber"] for frame in app_frames] == list(range(FRAMES))  # the second follower, at once


def test_node_app_frames_are_python_app_document_frames(late_followers, tmp_path):
    (_, app_frames), results_file = late_followers
    document = tmp_path / "app.json"
    subprocess.run([sys.executable, "-m", "outputs.app_json", results_file, "-o", document], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    frames = json.loads(document.read_text())["frames"]
    assert frames[0]["persons"][0]["camera"] is not None  # BlazePose: the camera derived from the pelvis
    assert app_frames == frames


def test_node_follower_killed_mid_job_resumes_from_its_last_index(tmp_path):
    results, history, job = tcp_endpoint(), tcp_endpoint(), "node-resume"
    run = realtime_run(results, history, job, tmp_path)
    first = second = None
    try:
        first = node("examples/follow.js", results, history, job)
        before = []
        while sum(m["type"] == "frame" for m in before) < 60:
            line = first.stdout.readline()
            assert line, first.stderr.read()
            before.append(json.loads(line))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        last = before[-1]["index"]
        second = node("examples/follow.js", results, history, job, last + 1)
        after = lines_of(second)
        finished(run)
    finally:
        for process in (run, first, second):
            if process is not None:
                process.kill()
    assert after[0]["type"] == "job_start" and after[-1]["type"] == "job_end"
    indices = [m["index"] for m in before + after if m["type"] == "frame"]
    assert indices == list(range(FRAMES))


def test_node_app_frame_of_an_hmr2_person_is_python_app_document_frame():
    """The HMR 2.0 fields (smpl, camera, mesh) that a BlazePose run lacks, on a made-up one-frame job."""
    rng = np.random.default_rng(3)
    keypoints_2d = rng.normal(300, 50, (25, 3)).astype("<f4")
    keypoints_2d[19] = np.nan  # a joint the detector lacks
    person = {"track_id": 2, "state": "interpolated", "confidence": 0.81, "frames_since_seen": 1,
              "bbox": np.array([10.5, 20.25, 100.0, 1 / 128], "<f4"),  # 1/128 * 1e6 is a tie: rounds to even
              "keypoints_2d": keypoints_2d, "keypoints_3d": rng.normal(size=(25, 3)).astype("<f4"),
              "joint_angles": {"leftKnee": 170.5, "rightKnee": None},
              "smpl": {"global_orient": rng.normal(size=(1, 3, 3)).astype("<f4"),
                       "body_pose": rng.normal(size=(23, 3, 3)).astype("<f4"),
                       "betas": rng.normal(size=10).astype("<f4")},
              "camera": {"translation": np.array([0.1, -0.2, 30.0], "<f4"), "focal_length": 12_500.0,
                         "principal_point": np.array([320.0, 180.0], "<f4")},
              "vertices": rng.normal(size=(6890, 3)).astype("<f4")}
    messages = [
        {"type": "job_start", "schema": 1, "job": "j", "source": "clip.mp4", "fps": 29.97, "width": 640, "height": 360,
         "frame_count": 1, "detector": "hmr2", "joints": {"keypoints_2d": list(CANONICAL_JOINTS),
                                                          "keypoints_3d": list(CANONICAL_JOINTS)},
         "intrinsics": {"fx": 12_500.0, "fy": 12_500.0, "cx": 320.0, "cy": 180.0},
         "mesh_faces": rng.integers(0, 6890, (13776, 3)).astype("<i4")},
        {"type": "frame", "schema": 1, "job": "j", "index": 0, "pts_ms": 33.367, "people": [person]},
        {"type": "job_end", "schema": 1, "job": "j", "frames": 1, "status": "ok", "error": None},
    ]
    encoded = json.dumps([[bytes(part).hex() for part in codec.encode(m)] for m in messages])
    convert = """
        import { readFileSync } from "node:fs";
        import { appFrame, decode } from "./index.js";
        const [start, frame] = JSON.parse(readFileSync(0, "utf8")).map(
          (parts) => decode(parts.map((hex) => Buffer.from(hex, "hex"))));
        console.log(JSON.stringify(appFrame(frame, start)));"""
    result = subprocess.run([NODE, "--input-type=module", "-e", convert], cwd=CLIENT, input=encoded,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == app_document(messages)["frames"][0]


# --- the app's backend: the example, jobDocument, result files (issue 13) -----------------------------------

@pytest.fixture(scope="module")
def node_backend(tmp_path_factory):
    """``examples/backend.js`` against a serve that writes the overlay and the app JSON, on a clip whose runner
    appears after 20 black frames; then ``jobDocument`` of the same job, from its log after it ended.
    Gives (the example's summary, its store folder, the document, the --app-json file's content)."""
    folder = tmp_path_factory.mktemp("backend")
    clip, out, store = late_rider_clip(folder / "late.avi", 40), folder / "out", folder / "store"
    history = tcp_endpoint()
    with serving("--history", history, "--job-log", str(folder / "logs"), "--overlay", str(out),
                 "--app-json", str(out)) as (_server, control, results, _ipc):
        summary = summary_of(node("examples/backend.js", control, results, history, clip, store), timeout=180)
        script = """
            import { jobDocument } from "./index.js";
            const [results, history, job] = process.argv.slice(1);
            console.log(JSON.stringify(await jobDocument(results, history, job, { timeoutMs: 30_000 })));"""
        done = subprocess.run([NODE, "--input-type=module", "-e", script, results, history, summary["job"]],
                              cwd=CLIENT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    return summary, store, json.loads(done.stdout), json.loads((out / f"{summary['job']}.json").read_text())


def test_node_job_document_is_the_app_json_file(node_backend):
    _, _, document, written = node_backend
    assert document == written
    assert document["metadata"]["backfilledFrames"] > 0 and all(f["persons"] for f in document["frames"])


def test_node_example_backend_stores_every_frame_with_the_rider_and_fetches_the_overlay(node_backend):
    summary, store, _, written = node_backend
    frames = BLACK_FRAMES + 40
    stored = [json.loads((store / "frames" / f"{i}.json").read_text()) for i in range(frames)]
    assert len(list((store / "frames").iterdir())) == frames == summary["storedLive"]
    assert [{k: v for k, v in frame.items() if k != "videoId"} for frame in stored] == written["frames"]
    assert all(frame["persons"] for frame in stored)
    assert summary["backfilled"] == written["metadata"]["backfilledFrames"] > 0
    video = json.loads((store / "video.json").read_text())
    assert (video["fps"], video["frameCount"], video["resolution"]) == (30.0, frames, [960, 544])
    assert summary["outputs"]["overlay"].endswith(f"{summary['job']}.mp4")
    fetched = Path(video["overlayVideoPath"]).read_bytes()  # over the control socket, not copied from the path
    assert fetched == Path(summary["outputs"]["overlay"]).read_bytes() and summary["overlayBytes"] == len(fetched)
    with av.open(video["overlayVideoPath"]) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == frames
