"""Sources a remote backend can give, through a real ``launch.py serve``: an upload over the control socket,
a Windows path as WSL maps it, and part of a clip (start, end, max_frames)."""
import json
import os
import time

import cv2
import numpy as np
import pytest

from bus.client import Control

from conftest import VIDEO, Collector, launch, run_job, serving

MAX_UPLOAD_MB = 3  # vid.mp4 is 2.0 MiB


@pytest.fixture(scope="module")
def server():
    with serving("--max-upload-mb", str(MAX_UPLOAD_MB)) as (_process, control_endpoint, results, folder):
        control = Control(control_endpoint, timeout_ms=30_000)
        try:
            control.wait_until_ready(timeout_s=240)
            yield control, results, folder
        finally:
            control.close()


def spooled(folder) -> list[str]:
    uploads = folder / "uploads"
    return sorted(path.name for path in uploads.iterdir()) if uploads.exists() else []


def gone(folder, upload: str, wait_s: float = 10.0) -> bool:
    """The launcher removes a finished job's upload when it hears of the job's end: allow it a moment."""
    deadline = time.monotonic() + wait_s
    while upload in spooled(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    return upload not in spooled(folder)


def test_an_uploaded_clip_is_a_jobs_source_and_is_removed_when_the_job_ends(server):
    control, results, folder = server
    upload = control.upload(VIDEO.read_bytes(), name="C:\\clips\\my run.mp4", chunk_bytes=300_000)
    assert spooled(folder) == [upload]
    collector = Collector(results, timeout_ms=60_000)
    collector.start()
    time.sleep(0.5)  # the subscription reaches the XPUB
    assert control.submit_upload(upload, job="uploaded", max_frames=6) == "uploaded"
    published = [m for m in collector.result(90) if m["job"] == "uploaded"]
    start, end = published[0], published[-1]
    assert start["source_from"] == "upload:C:\\clips\\my run.mp4"
    assert start["source"] == str(folder / "uploads" / upload / "my_run.mp4")
    assert end["status"] == "ok" and end["frames"] == 6, end
    assert gone(folder, upload)


def test_a_partial_upload_is_discarded_with_a_clear_error(server):
    control, _results, folder = server
    data = VIDEO.read_bytes()
    reply = control.request(cmd="upload", name="clip.mp4", size=len(data))
    upload = reply["upload"]
    assert control.request(cmd="upload_chunk", upload=upload, offset=0, data=data[:100_000]) == {
        "ok": True, "received": 100_000}
    with pytest.raises(RuntimeError, match=f"upload {upload} is incomplete: 100000 of {len(data)} bytes"):
        control.submit_upload(upload, job="half")
    assert upload not in spooled(folder)
    later = control.request(cmd="upload_chunk", upload=upload, offset=100_000, data=data[100_000:200_000])
    assert not later["ok"] and f"no upload {upload} in progress" in later["error"]
    assert control.status("half")["ok"] is False  # no job was made of it


def test_chunks_out_of_order_or_past_the_size_discard_the_upload(server):
    control, _results, folder = server
    upload = control.request(cmd="upload", name="clip.mp4", size=10)["upload"]
    skipped = control.request(cmd="upload_chunk", upload=upload, offset=5, data=b"12345")
    assert not skipped["ok"] and "offset 5, expected 0; discarded" in skipped["error"]
    upload = control.request(cmd="upload", name="clip.mp4", size=10)["upload"]
    too_much = control.request(cmd="upload_chunk", upload=upload, offset=0, data=b"x" * 11)
    assert not too_much["ok"] and "more than the 10 announced; discarded" in too_much["error"]
    assert upload not in spooled(folder)


def test_an_upload_over_the_limit_is_refused_before_any_byte(server):
    control, _results, folder = server
    before = spooled(folder)
    with pytest.raises(RuntimeError, match=f"exceeds the limit of {MAX_UPLOAD_MB * 2**20} bytes"):
        control.upload(b"x" * (MAX_UPLOAD_MB * 2**20 + 1), name="big.mp4")
    assert spooled(folder) == before


def test_a_wsl_share_path_is_read_at_its_linux_path_and_the_job_says_so(server):
    control, results, _folder = server
    distribution = os.environ.get("WSL_DISTRO_NAME", "Ubuntu")
    windows = f"\\\\wsl.localhost\\{distribution}" + str(VIDEO.resolve()).replace("/", "\\")
    published = run_job(control, results, windows, "from-windows", max_frames=3)
    start, end = published[0], published[-1]
    assert (start["source"], start["source_from"]) == (str(VIDEO.resolve()), windows)
    assert end["status"] == "ok" and end["frames"] == 3


def test_a_windows_path_whose_linux_path_is_missing_names_both(server):
    control, _results, _folder = server
    with pytest.raises(RuntimeError) as refused:
        control.submit("C:\\clips\\no such run.mp4", job="missing-windows")
    assert str(refused.value) == ("C:\\clips\\no such run.mp4 is /mnt/c/clips/no such run.mp4 as WSL maps Windows "
                                  "paths, and /mnt/c/clips/no such run.mp4 does not exist")


def test_start_end_and_max_frames_take_part_of_the_clip(server):
    control, results, _folder = server
    published = run_job(control, results, VIDEO, "middle", start=1.0, end=2.0)
    start, frames, end = published[0], [m for m in published if m["type"] == "frame"], published[-1]
    assert start["options"]["start"] == 1.0 and start["options"]["end"] == 2.0
    assert start["frame_count"] is None  # not known ahead for a time range
    assert [f["index"] for f in frames] == list(range(len(frames)))
    assert 1000.0 <= frames[0]["pts_ms"] < 1000.0 + 1000.0 / start["fps"]
    assert all(f["pts_ms"] < 2000.0 for f in frames) and len(frames) == round(start["fps"])
    assert end["status"] == "ok" and end["frames"] == len(frames)
    capped = run_job(control, results, VIDEO, "capped", max_frames=4)
    assert capped[0]["frame_count"] == 4 and capped[-1]["frames"] == 4


def test_the_files_of_part_of_a_clip_hold_that_part(tmp_path):
    run = launch(VIDEO, "--start", "1.0", "--max-frames", "10", "--overlay", tmp_path, "--app-json", tmp_path,
                 "--job", "part", "--job-log", tmp_path / "logs")
    assert run.returncode == 0, run.stderr
    overlay = cv2.VideoCapture(str(tmp_path / "part.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    corner = (slice(0, 40), slice(-200, None))  # far from the runner and the drawing
    first = overlay.read()[1][corner].astype(int)
    source = cv2.VideoCapture(str(VIDEO))
    difference = [np.abs(source.read()[1][corner].astype(int) - first).mean() for _ in range(60)]
    assert int(np.argmin(difference)) == 30  # 1.0 s at 30 fps: the overlay starts at the source's frame 30
    document = json.loads((tmp_path / "part.json").read_text())
    assert [frame["frameNumber"] for frame in document["frames"]] == list(range(10))
