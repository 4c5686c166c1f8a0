"""The per-job HTML report: figures from synthetic messages, and a real run rendered in headless Chromium."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from bus import messages
from outputs.report import __main__ as report_cli, build_report, read_messages, summary, write_report
from pose.angles import ANGLE_KEYS

from conftest import VIDEO, launch

IMG = re.compile(r'<img [^>]*src="data:image/png;base64,')
CELL = re.compile(r'<span class="cell (\w+)" title="frame (\d+)')
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                    "(apt-get install -y chromium)")


# --- synthetic job ------------------------------------------------------------

def person(track_id: int, state: str, knee: float | None = 150.0) -> dict:
    angles = {key: 90.0 for key in ANGLE_KEYS} | {"leftKnee": knee}
    return {"track_id": track_id, "state": state, "joint_angles": angles}


def frame(index: int, people: list[dict], t0: float = 1000.0) -> dict:
    message = messages.frame("synthetic", index, index * 1000 / 30, people)
    decoded = t0 + index / 30  # decode at 30 fps; 100 ms to detect, 10 ms to publish
    message["timestamps"] = {"decoded": decoded, "detected": decoded + 0.1, "published": decoded + 0.11}
    return message


# Primary subject (track 1) per frame: 10 observed, 3 predicted, 3 interpolated, 2 held, then an
# empty frame, then observed up to frame 399 (400 frames: two strip rows at 30 fps); track 2 joins
# from frame 300 as the second person.
PRIMARY = ["observed"] * 10 + ["predicted"] * 3 + ["interpolated"] * 3 + ["held"] * 2 + [None] + ["observed"] * 381


def synthetic_job() -> list[dict]:
    frames = []
    for index, state in enumerate(PRIMARY):
        people = [] if state is None else [person(1, state, knee=None if index == 5 else 150.0)]
        if index >= 300:
            people.append(person(2, "observed"))
        frames.append(frame(index, people))
    start = messages.job_start("synthetic", "clip.mp4", 30.0, 640, 360, len(frames), detector="fake",
                               angles=list(ANGLE_KEYS))
    return [start, *frames, messages.job_end("synthetic", len(frames))]


@pytest.fixture(scope="module")
def synthetic_page() -> str:
    return build_report(synthetic_job())


def table_row(page: str, heading: str) -> list[str]:
    """The cells of the summary row headed ``heading`` (tags stripped)."""
    row = re.search(rf"<tr><th>(?:<span[^>]*></span>)?{re.escape(heading)}</th>(.*?)</tr>", page)
    assert row, f"no summary row {heading!r}"
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1])]


def test_synthetic_summary_counts_states_and_speed(synthetic_page):
    page = synthetic_page
    assert table_row(page, "Frames") == ["400 (13.3 s of video)"]
    assert table_row(page, "People seen") == ["2 tracks"]
    assert table_row(page, "observed") == ["391", "97.8%"]
    assert table_row(page, "predicted") == ["3", "0.8%"]
    assert table_row(page, "interpolated") == ["3", "0.8%"]
    assert table_row(page, "held") == ["2", "0.5%"]
    assert table_row(page, "nobody") == ["1", "0.2%"]
    assert table_row(page, "Decode") == ["30.0"]
    assert table_row(page, "decoded → detected") == ["100", "100", "100"]
    assert table_row(page, "detected → published") == ["10", "10", "10"]


def test_synthetic_strip_has_one_cell_per_frame_in_primary_state(synthetic_page):
    cells = CELL.findall(synthetic_page)
    assert [int(i) for _, i in cells] == list(range(len(PRIMARY)))
    assert [s for s, _ in cells] == [state or "none" for state in PRIMARY]


def test_synthetic_plots_one_angle_image_per_track_plus_people_count(synthetic_page):
    page = synthetic_page
    assert len(IMG.findall(page)) == 1 + 2
    assert 'alt="joint angles, track 1"' in page and 'alt="joint angles, track 2"' in page


def test_none_angle_and_absent_track_become_gaps():
    series = summary.track_series(synthetic_job()[1:-1], 1, list(ANGLE_KEYS))
    assert np.isnan(series.angles["leftKnee"][5]) and series.angles["leftKnee"][4] == 150.0
    assert series.states[10:20] == ["predicted"] * 3 + ["interpolated"] * 3 + ["held"] * 2 + [None, "observed"]
    assert np.isnan(series.angles["rightKnee"][18]) and series.angles["rightKnee"][19] == 90.0


def test_failed_job_without_frames_still_reports_its_error():
    page = build_report([messages.job_end("broken", 0, "cannot open source nope.mp4")])
    assert table_row(page, "Status") == ["error"]
    assert table_row(page, "Error") == ["cannot open source nope.mp4"]
    assert "No frames." in page and "Nobody was tracked." in page


def test_text_from_messages_is_escaped():
    job = synthetic_job()
    job[0]["source"] = "<script>alert(1)</script>.mp4"
    assert "<script>" not in build_report(job)


def test_one_job_per_report():
    with pytest.raises(ValueError, match="one job"):
        build_report([messages.job_end("a", 0), messages.job_end("b", 0)])


def test_cli_writes_page_next_to_results(tmp_path):
    results = tmp_path / "synthetic.jsonl"
    results.write_text("".join(json.dumps(m) + "\n" for m in synthetic_job()))
    assert report_cli.main([str(results)]) == 0
    assert CELL.findall((tmp_path / "synthetic.html").read_text())
    assert report_cli.main([str(tmp_path / "missing.jsonl")]) == 1


# --- real run, rendered -------------------------------------------------------

@pytest.fixture(scope="module")
def real_page(tmp_path_factory):
    """The report of one pipeline run over the shared test video."""
    out = tmp_path_factory.mktemp("run")
    run = launch(VIDEO, "--out", out, "--job", "vid")
    assert run.returncode == 0, run.stderr
    return write_report(read_messages(out / "vid.jsonl"), out / "vid.html")


def test_real_run_summary_and_strip(real_page):
    page = real_page.read_text()
    assert table_row(page, "Status") == ["ok"]
    assert table_row(page, "Frames")[0].startswith("180 ")
    assert table_row(page, "observed") == ["180", "100.0%"]
    assert len(CELL.findall(page)) == 180
    assert "http://" not in page and "https://" not in page  # self-contained


def chromium(*args: str, profile) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    run = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


# Counts images that decoded to real pixels; the page itself carries no script, so the test adds one.
IMAGE_PROBE = """<script>addEventListener("load", () => {
  const images = [...document.images];
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = `${loaded}/${images.length}`;
});</script>"""


@needs_chromium
def test_real_run_images_load_in_chromium(real_page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(real_page.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probed.as_uri(), profile=tmp_path / "profile").stdout
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert found, "image probe did not run"
    assert found[1] == found[2] == "2"  # people per frame, and track 1's angles


@needs_chromium
def test_real_run_screenshot_is_not_blank(real_page, tmp_path):
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2000", real_page.as_uri(), profile=tmp_path / "profile")
    pixels = cv2.imread(str(shot))
    assert pixels is not None and pixels.shape == (2000, 1280, 3), "not a 1280×2000 PNG"
    # Plots and the green strip: many distinct colours, not one flat page background.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
