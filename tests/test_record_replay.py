"""Record a job, replay the track stage alone on it: deterministic, equal to the live run, editable."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bench.tracking import withheld_bursts
from bus.log import drop_people, read, write_all
from pose.skeleton import JOINT_INDEX

from conftest import ROOT, VIDEO, Collector, free_port, launch

FRAMES = 180  # vid.mp4


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_publish_time(messages):
    """Also without the --out file's own path (job_end.outputs.out), which names the folder of each run."""
    for message in messages:
        message.get("timestamps", {}).pop("published", None)
        message.get("outputs", {}).pop("out", None)
    return messages


def replay_track(job_dir, out_dir, *flags, results=None):
    subprocess.run([sys.executable, "-m", "stages.track", "--replay", str(job_dir), "--out", str(out_dir),
                    "--results", results or f"tcp://127.0.0.1:{free_port()}",
                    "--history", f"tcp://127.0.0.1:{free_port()}", "--acks", f"tcp://127.0.0.1:{free_port()}",
                    "--job-log", str(out_dir / "logs"), "--log-level", "error", *flags],
                   cwd=ROOT, check=True, timeout=120)
    return out_dir / f"{job_dir.name}.jsonl"


def replay_to_subscriber(job_dir, out_dir, *flags) -> list[dict]:
    """What a results subscriber receives from a replay (which waits for it to subscribe)."""
    results = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(results)
    collector.start()
    replay_track(job_dir, out_dir, "--wait-subscribers", "1", *flags, results=results)
    return collector.result()


def with_people_dropped(job_dir, frames, out_dir):
    """A copy of a recorded job in which nobody was detected on ``frames``."""
    edited = out_dir / job_dir.name
    edited.mkdir(parents=True)
    (edited / "events.log").write_bytes((job_dir / "events.log").read_bytes())
    write_all(edited / "detections.log", drop_people(read(job_dir / "detections.log"), frames))
    return edited


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
    def unplaced(path):  # the bytes, but for the --out file's own path, which its job_end lists
        return path.read_bytes().replace(str(path).encode(), b"")

    assert unplaced(first) == unplaced(second)  # byte for byte
    live = without_publish_time(lines(recording / "live" / "rec1.jsonl"))
    assert without_publish_time(lines(first)) == live


def test_detections_removed_from_a_recording_come_out_filled(recording, tmp_path):
    edited = with_people_dropped(recording / "rec" / "rec1", range(100, 120), tmp_path / "edited")
    frames = [m for m in lines(replay_track(edited, tmp_path / "out")) if m["type"] == "frame"]
    assert len(frames) == 180
    for frame in frames[100:120]:
        (runner,) = frame["people"]
        assert runner["state"] in ("predicted", "interpolated") and runner["track_id"] == 1
    assert all(f["people"][0]["state"] == "observed" for f in frames[:100] + frames[120:])


def expected_runner(withheld: np.ndarray, lookahead: int) -> list[tuple[str, int]]:
    """(state, frames_since_seen) of the runner on each frame when the frames in ``withheld`` ((N,) bool) lost it.

    The tracker releases frame i once frame i + lookahead is in (at the end, once the
    job ends), so a withheld frame is interpolated exactly when the next kept frame is at
    most ``lookahead`` frames after it, else predicted; frames_since_seen counts from the last kept frame.
    """
    kept = np.flatnonzero(~withheld)
    expected = []
    for i, lost in enumerate(withheld):
        last_kept = kept[kept <= i][-1]
        if not lost:
            expected.append(("observed", 0))
        else:
            next_kept = kept[kept > i][0]
            expected.append(("interpolated" if next_kept - i <= lookahead else "predicted", int(i - last_kept)))
    return expected


def runner_through_withheld_bursts(recording, tmp_path, lookahead: int) -> list[dict]:
    """The frame messages of a --subjects 1 replay with 35% of frames withheld in bursts of 1-15.

    Checks what the subscriber sees: every frame once, in order; the runner first in
    each, one track throughout, in the state and frames_since_seen the withheld layout implies.
    """
    withheld = withheld_bursts(FRAMES)
    edited = with_people_dropped(recording / "rec" / "rec1", set(np.flatnonzero(withheld)), tmp_path / "edited")
    received = replay_to_subscriber(edited, tmp_path / "out", "--subjects", "1", "--lookahead", str(lookahead))
    frames = [m for m in received if m["type"] == "frame"]
    assert [m["index"] for m in frames] == list(range(FRAMES))
    # With no look-ahead the frames before the runner's track is confirmed (n_init = 3) are out before it is.
    followed = frames[2:] if lookahead == 0 else frames
    assert all(frame["people"] for frame in followed)
    runner = [frame["people"][0] for frame in followed]
    assert {person["track_id"] for person in runner} == {runner[0]["track_id"]}
    expected = expected_runner(withheld, lookahead)[FRAMES - len(followed):]
    assert [(person["state"], person["frames_since_seen"]) for person in runner] == expected
    return frames


def test_runner_is_followed_through_35_percent_withheld_detections(recording, tmp_path):
    """The issue's coverage acceptance, through the track process, with the default look-ahead of 8."""
    frames = runner_through_withheld_bursts(recording, tmp_path, lookahead=8)
    # The withheld detections are the truth the filled frames are measured against: holding the last
    # pose instead would be up to ~100 px off on these frames, as the runner crosses the picture.
    knee = JOINT_INDEX["left_knee"]
    recorded = read(recording / "rec" / "rec1" / "detections.log")
    detected = {m["index"]: m["people"][0]["keypoints_2d"][knee, :2] for m in recorded}
    interpolated = [f for f in frames if f["people"][0]["state"] == "interpolated"]
    assert interpolated
    for frame in interpolated:
        error_px = np.linalg.norm(frame["people"][0]["keypoints_2d"][knee, :2] - detected[frame["index"]])
        assert error_px < 60, f"frame {frame['index']}: left knee {error_px:.0f} px from the withheld detection"


def test_without_look_ahead_every_withheld_frame_is_predicted(recording, tmp_path):
    frames = runner_through_withheld_bursts(recording, tmp_path, lookahead=0)
    assert {f["people"][0]["state"] for f in frames[2:]} == {"observed", "predicted"}
    # Causal prediction beats holding the last detection (what PHALP publishes) on the withheld frames.
    detected = {m["index"]: m["people"][0]["keypoints_2d"][:, :2]
                for m in read(recording / "rec" / "rec1" / "detections.log")}
    predicted_px, held_px = [], []
    for frame in frames[2:]:
        runner = frame["people"][0]
        if runner["state"] == "predicted":
            truth = detected[frame["index"]]
            last_seen = detected[frame["index"] - runner["frames_since_seen"]]
            predicted_px.append(np.nanmean(np.linalg.norm(runner["keypoints_2d"][:, :2] - truth, axis=1)))
            held_px.append(np.nanmean(np.linalg.norm(last_seen - truth, axis=1)))
    assert np.mean(predicted_px) < np.mean(held_px), (np.mean(predicted_px), np.mean(held_px))
