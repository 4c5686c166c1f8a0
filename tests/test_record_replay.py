"""Record a job, replay the track stage alone on it: deterministic, equal to the live run, editable."""
import json
import subprocess
import sys

import pytest

from bus.log import drop_people, read, write_all
from conftest import ROOT, VIDEO, free_port, launch


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_publish_time(messages):
    for message in messages:
        message.get("timestamps", {}).pop("published", None)
    return messages


def replay_track(job_dir, out_dir):
    subprocess.run([sys.executable, "-m", "stages.track", "--replay", str(job_dir), "--out", str(out_dir),
                    "--results", f"tcp://127.0.0.1:{free_port()}", "--history", f"tcp://127.0.0.1:{free_port()}",
                    "--acks", f"tcp://127.0.0.1:{free_port()}", "--job-log", str(out_dir / "logs"),
                    "--log-level", "error"], cwd=ROOT, check=True, timeout=120)
    return out_dir / f"{job_dir.name}.jsonl"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    folder = tmp_path_factory.mktemp("record")
    run = launch(VIDEO, "--results", f"tcp://127.0.0.1:{free_port()}", "--record", folder / "rec", "--out",
                 folder / "live", "--job", "rec1", "--job-log", folder / "logs")
    assert run.returncode == 0, run.stderr
    return folder


def test_record_holds_every_stream(recording):
    job = recording / "rec" / "rec1"
    assert sorted(p.name for p in job.iterdir()) == ["detections.log", "events.log", "frames.log", "results.log"]
    assert [m["index"] for m in read(job / "frames.log")] == list(range(180))
    assert "jpeg" in next(read(job / "frames.log"))


def test_track_replay_is_deterministic_and_equals_the_live_run(recording, tmp_path):
    job = recording / "rec" / "rec1"
    first = replay_track(job, tmp_path / "a")
    second = replay_track(job, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()  # byte for byte
    live = without_publish_time(lines(recording / "live" / "rec1.jsonl"))
    assert lines(first) == live


def test_detections_removed_from_a_recording_come_out_filled(recording, tmp_path):
    job = recording / "rec" / "rec1"
    edited = tmp_path / "rec1"
    edited.mkdir()
    (edited / "events.log").write_bytes((job / "events.log").read_bytes())
    write_all(edited / "detections.log", drop_people(read(job / "detections.log"), 100, 120))
    frames = [m for m in lines(replay_track(edited, tmp_path / "out")) if m["type"] == "frame"]
    assert len(frames) == 180
    for frame in frames[100:120]:
        (runner,) = frame["people"]
        assert runner["state"] in ("predicted", "interpolated") and runner["track_id"] == 1
    assert all(f["people"][0]["state"] == "observed" for f in frames[:100] + frames[120:])
