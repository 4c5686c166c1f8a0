"""Result files as a contract, end to end through ``launch.py serve``: job_end (live and replayed from the job
log) lists the files, each complete on disk when job_end is published; a failed file is named, not lost; and
the files give a person on every frame once anybody is seen, which the live stream does not."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import av
import joblib
import pytest
import zmq

from bus import sockets
from bus.client import Control, OutputError, follow, replay, result_files

from clips import BLACK_FRAMES, late_rider_clip as write_clip
from conftest import free_port, serving

RIDER_FRAMES = 40


def complete(kind: str, path: str) -> object:
    """Read a result file whole, as a backend would on job_end; fails on a partial file."""
    if kind == "out":
        lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
        assert lines[-1]["type"] == "job_end"
        return lines
    if kind == "app_json":
        return json.loads(Path(path).read_text())
    if kind == "overlay":
        with av.open(path) as container:
            return sum(1 for _ in container.decode(video=0))
    if kind == "phalp_pkl":
        return joblib.load(path)
    if kind == "report":
        text = Path(path).read_text()
        assert text.rstrip().endswith("</html>")
        return text
    return [Path(p).read_bytes() for p in path]  # per track: gltf, bvh


class Backend(threading.Thread):
    """Follows one job like a backend, and on its job_end reads every file listed at once."""

    def __init__(self, results: str, history: str, job: str):
        super().__init__(daemon=True)
        self.results, self.history, self.job = results, history, job
        self.messages: list[dict] = []
        self.read: dict[str, object] = {}
        self.error: BaseException | None = None

    def run(self):
        try:
            for message in follow(self.results, self.history, self.job, timeout_ms=120_000):
                self.messages.append(message)
            end = self.messages[-1]
            self.read = {kind: complete(kind, path) for kind, path in end["outputs"].items()}
        except BaseException as exc:  # surfaced by the test
            self.error = exc


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two jobs through one serve writing every file kind: a clip whose runner appears after 20 black frames,
    and a clip of black frames only. --phalp-pkl points under a regular file, so that output fails."""
    folder = tmp_path_factory.mktemp("files")
    late, empty = write_clip(folder / "late.avi", RIDER_FRAMES), write_clip(folder / "empty.avi", 0)
    out = folder / "out"
    (folder / "blocker").write_text("a file where a folder should be")
    history = f"tcp://127.0.0.1:{free_port()}"
    flags = ["--history", history, "--job-log", folder / "logs", "--out", out, "--app-json", out, "--overlay", out,
             "--report", out, "--gltf", out, "--bvh", out, "--phalp-pkl", folder / "blocker" / "pkl"]
    with serving(*map(str, flags)) as (_server, control_endpoint, results, _ipc):
        control = Control(control_endpoint, timeout_ms=30_000)
        backends = {job: Backend(results, history, job) for job in ("late", "empty")}
        for job, backend in backends.items():
            backend.start()
            control.submit(str(late if job == "late" else empty), job=job)
        for backend in backends.values():
            backend.join(240)
            assert not backend.is_alive(), "no job_end"
            if backend.error:
                raise backend.error
        replayed = {job: replay_all(history, job) for job in backends}
        control.close()
    return folder, out, backends, replayed


def replay_all(history: str, job: str) -> list[dict]:
    sock = sockets.connect(zmq.Context.instance(), "history", history)
    try:
        found, start, done = [], 0, False
        while not done:
            chunk, end = replay(sock, job, start)
            found += chunk
            start, done = end["next"], end["done"]
        return found
    finally:
        sock.close(linger=0)


def test_job_end_lists_every_file_complete_when_it_is_published(served):
    _, out, backends, _ = served
    backend = backends["late"]
    end = backend.messages[-1]
    frames = BLACK_FRAMES + RIDER_FRAMES
    assert (end["type"], end["status"], end["frames"]) == ("job_end", "ok", frames)
    assert set(end["outputs"]) == {"out", "app_json", "overlay", "report", "gltf", "bvh"}
    assert end["outputs"]["app_json"] == str(out / "late.json") and end["outputs"]["overlay"] == str(out / "late.mp4")
    assert end["outputs"]["gltf"] == [str(out / "late.track1.glb")]
    read = backend.read  # read at the moment job_end arrived
    assert read["overlay"] == frames and read["app_json"]["frameCount"] == frames
    assert len(read["out"]) == len(backend.messages) and read["out"][-1]["outputs"] == end["outputs"]
    assert read["gltf"][0][:4] == b"glTF"


def test_a_failed_file_is_named_in_job_end_and_the_others_still_come(served):
    _, _, backends, _ = served
    end = backends["late"].messages[-1]
    assert set(end["output_errors"]) == {"phalp_pkl"} and "pkl" in end["output_errors"]["phalp_pkl"]
    with pytest.raises(OutputError, match="phalp_pkl") as failed:
        result_files(end)
    assert failed.value.outputs == end["outputs"]


def test_the_job_log_replays_the_same_job_end(served):
    _, _, backends, replayed = served
    for job, backend in backends.items():
        assert replayed[job][-1] == backend.messages[-1]


def test_no_temporary_file_is_left_beside_the_results(served):
    _, out, _, _ = served
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_files_have_the_rider_on_every_frame_once_seen_the_live_stream_does_not(served):
    _, _, backends, _ = served
    live = [m for m in backends["late"].messages if m["type"] == "frame"]
    first_seen = next(m["index"] for m in live if m["people"])
    # Live (unchanged): nobody until the tracker designates the rider, then held back to the look-ahead's reach.
    assert 0 < first_seen <= BLACK_FRAMES and not any(m["people"] for m in live[:first_seen])
    document = backends["late"].read["app_json"]
    persons = [frame["persons"] for frame in document["frames"]]
    assert all(persons)
    assert {(p[0]["trackingState"], p[0]["backfilled"]) for p in persons[:first_seen]} == {("held", True)}
    assert not any(p[0]["backfilled"] for p in persons[first_seen:])
    assert persons[0][0]["keypoints3d"] == persons[first_seen][0]["keypoints3d"]
    assert (document["metadata"]["personSeen"], document["metadata"]["firstPersonFrame"],
            document["metadata"]["backfilledFrames"]) == (True, first_seen, first_seen)


def test_a_job_where_nobody_is_seen_says_so_in_its_document(served):
    _, _, backends, _ = served
    document = backends["empty"].read["app_json"]
    assert document["frameCount"] == BLACK_FRAMES and all(f["persons"] == [] for f in document["frames"])
    assert (document["metadata"]["personSeen"], document["metadata"]["firstPersonFrame"]) == (False, None)
    end = backends["empty"].messages[-1]
    assert "gltf" in end["output_errors"]  # nobody to animate: said, not silently missing


def test_phalp_export_holds_the_rider_too(tmp_path):
    """--phalp-pkl through a one-off run: every frame has the rider, the leading ones held and backfilled."""
    clip = write_clip(tmp_path / "late.avi", 20)
    run = subprocess.run([sys.executable, "launch.py", str(clip), "--phalp-pkl", str(tmp_path), "--job", "late",
                          "--results", f"tcp://127.0.0.1:{free_port()}", "--history",
                          f"tcp://127.0.0.1:{free_port()}", "--job-log", str(tmp_path / "logs")],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    results = list(joblib.load(tmp_path / "late.pkl").values())
    assert len(results) == BLACK_FRAMES + 20 and all(r["tid"] for r in results)
    backfilled = [r["extra_data"][0]["backfilled"] for r in results]
    assert backfilled[0] and not backfilled[-1] and backfilled == sorted(backfilled, reverse=True)
