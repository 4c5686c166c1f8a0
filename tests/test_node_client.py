"""The Node.js client (clients/node): its own unit tests, then real pipeline runs followed from Node."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, VIDEO, free_port, launch

CLIENT = ROOT / "clients" / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (the Node client needs Node.js 20+)")


@pytest.fixture(scope="module", autouse=True)
def node_modules():
    if not (CLIENT / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT, check=True,
                       timeout=120)


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
    endpoint, job = f"tcp://127.0.0.1:{free_port()}", "node-run"
    collector = node("examples/collect.js", endpoint, job)  # subscribes first; the run waits for it
    try:
        run = launch(VIDEO, "--results", endpoint, "--wait-subscribers", "1", "--job", job, "--out", tmp_path,
                     timeout=90)
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


def test_node_control_submits_and_follows_a_job():
    results, control = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    server = subprocess.Popen([sys.executable, "launch.py", "serve", "--results", results, "--control", control],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        summary = summary_of(node("examples/submit-and-follow.js", control, results, VIDEO), timeout=90)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
    assert summary["submitted"] == summary["job"]
    assert summary["indices"] == list(range(180))
    status = summary["status"]
    assert (status["ok"], status["id"], status["state"], status["frames"]) == (True, summary["job"], "done", 180)
    assert all(summary["health"]["stages"].values())
    assert [j["id"] for j in summary["list"]["jobs"]] == [summary["job"]]
