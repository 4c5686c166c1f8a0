"""Result files over the control socket (launcher.results): a backend on another machine reads a finished job's
files, named by output, never by path; refusals say why in one line and the service keeps serving."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bus.client import Control
from launcher.results import FetchError, ResultFiles
from outputs.atomic import write_atomically

from clips import late_rider_clip
from conftest import ROOT, VIDEO, run_job, serving


def job_end(job: str, outputs: dict, errors: dict | None = None) -> dict:
    return {"type": "job_end", "job": job, "outputs": outputs, "output_errors": errors or {}}


def read_all(files: ResultFiles, job: str, output: str, index: int | None = None) -> tuple[bytes, int]:
    """The file's bytes through ``chunk`` calls, and how many calls it took."""
    data, calls, done = b"", 0, False
    while not done:
        reply = files.chunk(job, output, index, len(data))
        data, calls, done = data + reply["data"], calls + 1, reply["done"]
    return data, calls


def test_a_listed_file_comes_in_chunks_of_at_most_chunk_bytes(tmp_path):
    path = write_atomically(tmp_path / "a.json", os.urandom(2500))
    files = ResultFiles(chunk_bytes=1000)
    files.note([job_end("a", {"app_json": str(path)}), {"type": "progress", "job": "b"}])
    assert read_all(files, "a", "app_json") == (path.read_bytes(), 3)
    last = files.chunk("a", "app_json", None, 2000)
    assert (len(last["data"]), last["size"], last["done"], last["name"]) == (500, 2500, True, "a.json")
    assert files.chunk("a", "app_json", None, 2500) == {"data": b"", "size": 2500, "done": True, "name": "a.json"}
    assert len(files.chunk("a", "app_json", None, 0, max_bytes=10)["data"]) == 10
    assert len(files.chunk("a", "app_json", None, 0, max_bytes=10**9)["data"]) == 1000  # capped


def test_an_empty_file_is_one_empty_chunk(tmp_path):
    path = write_atomically(tmp_path / "e.html", b"")
    files = ResultFiles()
    files.note([job_end("e", {"report": str(path)})])
    assert files.chunk("e", "report", None, 0) == {"data": b"", "size": 0, "done": True, "name": "e.html"}


def test_per_track_files_by_index(tmp_path):
    paths = [write_atomically(tmp_path / f"j.track{i}.glb", bytes([i]) * 10) for i in (1, 4)]
    files = ResultFiles()
    files.note([job_end("j", {"gltf": [str(p) for p in paths], "overlay": str(paths[0])})])
    assert [read_all(files, "j", "gltf", i)[0] for i in (0, 1)] == [b"\x01" * 10, b"\x04" * 10]
    assert files.chunk("j", "gltf", 1, 0)["name"] == "j.track4.glb"
    with pytest.raises(FetchError, match="^job j's gltf is 2 files \\(one per track\\): no index, give an index "
                                         "from 0 to 1$"):
        files.chunk("j", "gltf", None, 0)
    with pytest.raises(FetchError, match="index 2, give an index from 0 to 1"):
        files.chunk("j", "gltf", 2, 0)
    with pytest.raises(FetchError, match="^job j's overlay is one file: ask without an index$"):
        files.chunk("j", "overlay", 0, 0)


def test_refusals_name_what_is_wrong(tmp_path):
    path = write_atomically(tmp_path / "r.json", b"{}")
    files = ResultFiles()
    files.note([job_end("r", {"app_json": str(path)}, {"phalp_pkl": "cannot write /x/r.pkl"})])
    with pytest.raises(FetchError, match="^job r has no output 'overlay' \\(its job_end lists app_json\\)$"):
        files.chunk("r", "overlay", None, 0)
    with pytest.raises(FetchError, match="^job r's phalp_pkl file was not written: cannot write /x/r.pkl$"):
        files.chunk("r", "phalp_pkl", None, 0)
    with pytest.raises(FetchError, match="^offset 3 is past the end of job r's app_json file \\(2 bytes\\)$"):
        files.chunk("r", "app_json", None, 3)
    with pytest.raises(FetchError, match="^job gone ended without result files$"):
        files.chunk("gone", "app_json", None, 0)


def test_a_file_replaced_or_removed_since_its_job_ended_is_not_served(tmp_path):
    """``--overlay FILE.mp4`` names one file for every job: a later job's file is never served as an earlier's."""
    path = write_atomically(tmp_path / "one.mp4", b"first job")
    files = ResultFiles()
    files.note([job_end("first", {"overlay": str(path)})])
    write_atomically(path, b"second job")
    files.note([job_end("second", {"overlay": str(path)})])
    assert read_all(files, "second", "overlay")[0] == b"second job"
    with pytest.raises(FetchError, match="^job first's overlay file .*one.mp4 has changed since the job ended"):
        files.chunk("first", "overlay", None, 0)
    path.unlink()
    with pytest.raises(FetchError, match="^job second's overlay file .*one.mp4 cannot be read: No such file"):
        files.chunk("second", "overlay", None, 0)
    files.note([job_end("third", {"overlay": str(path)})])  # gone already when the job_end came
    with pytest.raises(FetchError, match="^job third's overlay file cannot be read: .*one.mp4: No such file"):
        files.chunk("third", "overlay", None, 0)


# --- through a real launch.py serve -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served_files(tmp_path_factory):
    """A serve writing the app JSON, the overlay and glTF per track; one job of a clip whose runner comes after
    20 black frames, followed to its job_end. Yields (control, the job_end, the serve's output folder)."""
    folder = tmp_path_factory.mktemp("fetch")
    clip, out = late_rider_clip(folder / "late.avi", 20), folder / "out"
    with serving("--app-json", str(out), "--overlay", str(out), "--gltf", str(out)) as (_server, endpoint,
                                                                                         results, _ipc):
        control = Control(endpoint, timeout_ms=30_000)
        try:
            end = run_job(control, results, clip, "late")[-1]
            assert end["type"] == "job_end" and end["status"] == "ok", end
            yield control, end, out
        finally:
            control.close()


def test_a_backend_fetches_the_app_json_and_the_overlay_as_written(served_files, tmp_path):
    control, end, out = served_files
    assert control.output_bytes("late", "app_json") == (out / "late.json").read_bytes()
    overlay = tmp_path / "overlay.mp4"
    assert control.fetch_output("late", "overlay", overlay, chunk_bytes=64 * 1024) == overlay.stat().st_size
    assert overlay.read_bytes() == Path(end["outputs"]["overlay"]).read_bytes()
    assert overlay.stat().st_size > 64 * 1024  # several chunks
    into = io.BytesIO()
    control.fetch_output("late", "gltf", into, index=0)
    assert into.getvalue() == Path(end["outputs"]["gltf"][0]).read_bytes() and into.getvalue()[:4] == b"glTF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]  # no temporary left beside it


def test_status_and_list_name_an_ended_job_s_files_as_its_job_end_did(served_files):
    control, end, _ = served_files
    deadline = time.monotonic() + 10  # status can lag the job_end a backend saw by a moment
    while (status := control.request(cmd="status", job="late"))["state"] != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status["outputs"] == end["outputs"] and status["output_errors"] == end["output_errors"] == {}
    (listed,) = [job for job in control.request(cmd="list")["jobs"] if job["id"] == "late"]
    assert listed["outputs"] == end["outputs"]


def test_refusals_are_one_line_and_the_service_keeps_serving(served_files, tmp_path):
    control, end, _ = served_files
    size = Path(end["outputs"]["app_json"]).stat().st_size

    def error(**request) -> str:
        reply = control.request(cmd="output_chunk", **request)
        assert reply["ok"] is False and "\n" not in reply["error"]
        return reply["error"]

    assert error(job="late", output="report", offset=0) == \
        "job late has no output 'report' (its job_end lists app_json, gltf, overlay)"
    assert error(job="late", output="app_json", offset=size + 1) == \
        f"offset {size + 1} is past the end of job late's app_json file ({size} bytes)"
    assert error(job="nobody", output="app_json", offset=0) == "no job nobody"
    assert error(job="late", output="gltf", offset=0).startswith("job late's gltf is 1 file (one per track)")
    assert "output_chunk.path" in error(job="late", output="app_json", offset=0, path="/etc/passwd")
    assert "output_chunk.offset" in error(job="late", output="app_json", offset=-1)
    assert "output_chunk.job" in error(job="../late", output="app_json", offset=0)
    control.submit(str(VIDEO), job="long")
    assert error(job="long", output="app_json", offset=0) in (
        f"job long is {state}: its result files can be fetched once it has ended" for state in ("queued", "running"))
    with pytest.raises(RuntimeError, match="^job long is (queued|running)"):
        control.fetch_output("long", "app_json", tmp_path / "long.json")
    assert not (tmp_path / "long.json").exists() and list(tmp_path.iterdir()) == []
    assert control.cancel("long")["ok"]
    assert control.health()["ok"] and control.output_bytes("late", "app_json")[:1] == b"{"



NODE_FETCH = """
    import { Control } from "./index.js";
    const [endpoint, store] = process.argv.slice(1);
    const control = new Control(endpoint, { timeoutMs: 30_000 });
    const overlayBytes = await control.fetchOutput("late", "overlay", `${store}/late.mp4`, { chunkBytes: 100_000 });
    const appJson = (await control.outputBytes("late", "app_json")).toString("utf8");
    const glb = await control.outputBytes("late", "gltf", { index: 0 });
    const refused = await control.fetchOutput("late", "bvh", `${store}/late.bvh`).then(() => null, (e) => e.message);
    console.log(JSON.stringify({ overlayBytes, appJson, glbMagic: glb.subarray(0, 4).toString("latin1"), refused }));
    control.close();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the Node client needs Node.js 20+)")
def test_a_node_backend_fetches_files_with_the_real_zeromq_package(served_files, tmp_path):
    control, _, out = served_files
    done = subprocess.run([shutil.which("node"), "--input-type=module", "-e", NODE_FETCH, control.endpoint,
                           str(tmp_path)], cwd=ROOT / "clients" / "node", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    fetched = (tmp_path / "late.mp4").read_bytes()
    assert fetched == (out / "late.mp4").read_bytes() and summary["overlayBytes"] == len(fetched) > 100_000
    assert summary["appJson"] == (out / "late.json").read_text() and summary["glbMagic"] == "glTF"
    assert summary["refused"] == "job late has no output 'bvh' (its job_end lists app_json, gltf, overlay)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.mp4"]  # the refused fetch left no file behind
