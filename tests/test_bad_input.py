"""Unusual input through ``launch.py serve``: each job works or ends with a clear error, and
the jobs after it are unaffected (one server for the whole module, as a service would run)."""
import cv2
import numpy as np
import pytest

from bus.client import Control

from clips import mjpeg_stream, write_clip, write_vfr_mkv
from conftest import VIDEO, free_port, run_job, serving


@pytest.fixture(scope="module")
def service():
    """(control, results endpoint) of one ``launch.py serve`` with BlazePose."""
    with serving() as (server, control_endpoint, results, _):
        control = Control(control_endpoint, timeout_ms=20_000)
        yield control, results
        control.close()


def runner_frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VIDEO))
    return [cv2.resize(capture.read()[1], size) for _ in range(count)]


def test_8k_frames_are_downscaled_and_results_come_in_source_pixels(service, tmp_path):
    control, results = service
    small = runner_frames(3, (1920, 1080))
    write_clip(tmp_path / "hd.avi", small)
    write_clip(tmp_path / "8k.avi", [cv2.resize(image, (7680, 4320)) for image in small])
    hd = run_job(control, results, tmp_path / "hd.avi", "hd")
    uhd = run_job(control, results, tmp_path / "8k.avi", "8k")
    start = uhd[0]
    assert (start["width"], start["height"], start["downscaled"]) == (7680, 4320, {"width": 3840, "height": 2160})
    assert (start["intrinsics"]["cx"], start["intrinsics"]["cy"]) == (3840, 2160)
    assert "downscaled" not in hd[0]
    assert [m["index"] for m in uhd if m["type"] == "frame"] == [0, 1, 2]
    assert uhd[-1]["status"] == "ok" and uhd[-1]["frames"] == 3
    for big, ref in zip((m for m in uhd if m["type"] == "frame"), (m for m in hd if m["type"] == "frame")):
        assert len(big["people"]) == len(ref["people"]) == 1
        # The same runner, 4 times larger: the body keypoints agree to a few pixels (an occluded
        # ankle may not); in the detected 3840-px frame they would be off by a factor of 2.
        offsets = np.abs(big["people"][0]["keypoints_2d"][:17, :2] / 4 - ref["people"][0]["keypoints_2d"][:17, :2])
        assert np.median(offsets) < 3


def test_variable_frame_rate_publishes_the_container_timestamps(service, tmp_path):
    control, results = service
    pts = [0, 40, 50, 150, 160, 300, 333, 1000]
    clip = write_vfr_mkv(tmp_path / "vfr.mkv", [np.full((48, 64, 3), 25 * i, np.uint8) for i in range(len(pts))], pts)
    published = run_job(control, results, clip, "vfr")
    frames = [m for m in published if m["type"] == "frame"]
    assert [(m["index"], m["pts_ms"]) for m in frames] == list(enumerate(pts))
    assert published[-1]["status"] == "ok" and published[-1]["frames"] == len(pts)


def test_streams_that_never_connect_or_drop_end_their_jobs_and_the_next_job_runs(service, tmp_path):
    control, results = service
    nowhere = run_job(control, results, f"rtsp://127.0.0.1:{free_port()}/live", "nowhere")
    assert [(m["type"], m["status"], m["frames"]) for m in nowhere] == [("job_end", "error", 0)]
    assert "could not connect" in nowhere[0]["error"]

    with mjpeg_stream([np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]) as url:
        dropped = run_job(control, results, url, "dropped")
    assert [m["index"] for m in dropped if m["type"] == "frame"] == list(range(5))
    assert dropped[-1]["status"] == "error" and dropped[-1]["frames"] == 5
    assert "stopped after 5 frames" in dropped[-1]["error"]

    clip = write_clip(tmp_path / "after.avi", [np.full((48, 64, 3), 100, np.uint8)] * 3)
    after = run_job(control, results, clip, "after")
    assert [m["index"] for m in after if m["type"] == "frame"] == [0, 1, 2]
    assert after[-1]["status"] == "ok"
