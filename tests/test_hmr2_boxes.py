"""HMR 2.0's person boxes: the box guard, threshold presets, and which source ``auto`` picks (ViTDet first)."""
import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from bus.messages import detections, validate
from detectors.base import FrameImage
from detectors.hmr2 import boxes
from detectors.hmr2.boxes import PRESETS, BlazePoseBoxes, PersonBoxes, guard_boxes, make_box_source, thresholds
from detectors.hmr2.detector import MIN_CAMERA_SCALE, Hmr2Detector, output_problem

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".." / "shared" / "fixtures" / "hmr2"
CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"
VIDEO = ROOT / ".." / "shared" / "media" / "vid.mp4"
RUNNER = np.float32([795.0, 200.0, 1125.0, 1000.0])  # around the runner of frame 0 (x1, y1, x2, y2)


class GivenBoxes:
    """A box source that returns the same boxes for every frame."""

    def __init__(self, xyxy):
        self.boxes = np.float32(xyxy).reshape(-1, 4)

    def __call__(self, frames):
        return [PersonBoxes(self.boxes.copy(), np.ones(len(self.boxes), np.float32)) for _ in frames]

    def close(self):
        pass


@pytest.fixture(scope="module")
def frame():
    capture = cv2.VideoCapture(str(VIDEO))
    ok, image = capture.read()
    capture.release()
    assert ok
    return FrameImage("vid", 0, 0.0, image)


def test_guard_clips_boxes_and_names_why_it_skips():
    given = np.float32([
        [-50, -20, 300, 400],  # sticks out top-left: clipped
        [100, 100, 100, 500],  # zero width
        [100, 300, 400, 300],  # zero height
        [2000, 100, 2100, 300],  # right of the 1920-px frame
        [100, 100, 104, 400],  # 4 px wide
        [np.nan, 0, 10, 10],
        [1800, 1000, 2500, 1500],  # bottom-right corner: 120 × 88 px inside
    ])
    clipped, reasons = guard_boxes(given, 1920, 1088, PRESETS["demo"])
    assert reasons == ["", "box_outside_image", "box_outside_image", "box_outside_image", "box_too_small",
                       "box_not_finite", ""]
    np.testing.assert_array_equal(clipped[0], [0, 0, 300, 400])
    np.testing.assert_array_equal(clipped[6], [1800, 1000, 1920, 1088])
    assert np.isfinite(clipped).all()
    _, reasons = guard_boxes(clipped[[0, 6]], 1920, 1088, PRESETS["track"])  # 120 × 88 is under track.py's 50 × 100
    assert reasons == ["", "box_too_small"]


def test_presets_are_the_official_thresholds_and_options_override_them():
    assert (PRESETS["demo"].score, PRESETS["demo"].vitdet_score) == (0.5, 0.25)  # demo.py
    track = PRESETS["track"]  # track.py (ViTDet at 0.5) with PHALP's low_th_c and small_w / small_h
    assert (track.score, track.vitdet_score, track.min_width, track.min_height) == (0.8, 0.5, 50, 100)
    mine = thresholds("track", score=0.6, min_size="20x40")
    assert (mine.score, mine.min_width, mine.min_height, mine.vitdet_score) == (0.6, 20, 40, 0.5)
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT"):
        thresholds(min_size="20")
    with pytest.raises(argparse.ArgumentTypeError, match="negative"):
        thresholds(min_size="-1x5")
    with pytest.raises(ValueError, match="unknown box preset"):
        thresholds("strict")


def test_people_filter_keeps_persons_above_the_threshold():
    """What every detector-backed source (ViTDet, Faster R-CNN) keeps of its raw output."""
    found = boxes.people_of(np.float32([[0, 0, 10, 20], [1, 1, 9, 9], [2, 2, 30, 40], [5, 5, 50, 90]]),
                            np.float32([0.9, 0.95, 0.5, 0.81]), np.array([0, 2, 0, 0]), 0, 0.5)
    np.testing.assert_array_equal(found.scores, np.float32([0.9, 0.81]))  # 0.5 is not above 0.5 (demo.py's >)
    assert found.boxes.shape == (2, 4) and found.boxes.dtype == np.float32


def test_degenerate_and_tiny_boxes_publish_nothing_absurd(frame):
    tiny_inside = [900, 500, 912, 512]  # 12 px: kept, upsampled 21×
    detector = Hmr2Detector(CHECKPOINT, box_source=GivenBoxes(
        [RUNNER, [900, 500, 900, 700], [900, 500, 1100, 500], [5000, 5000, 5100, 5200], [900, 500, 903, 600],
         tiny_inside, [-300, 800, 40, 1300]]), mesh=True)
    people = detector.detect([frame])[0]
    assert len(people) == 3
    assert detector.skipped == {"box_outside_image": 3, "box_too_small": 1}
    for person in people:
        assert person.bbox[0] >= 0 and person.bbox[1] >= 0
        assert person.bbox[0] + person.bbox[2] <= 1920 and person.bbox[1] + person.bbox[3] <= 1088
        values = [person.keypoints_2d, person.keypoints_3d, person.extras["vertices"],
                  person.extras["camera"]["translation"], *person.extras["smpl"].values()]
        assert all(np.isfinite(v).all() for v in values)
        # The fixture model's camera scale is ~1: the body stands where its box says, not at 1e13 m.
        depth = person.extras["camera"]["translation"][2]
        box_side = max(person.bbox[2] * 256 / 192, person.bbox[3])
        assert 0 < depth < 4 * 2 * person.extras["camera"]["focal_length"] / box_side
    validate(detections(frame.job, frame.index, frame.pts_ms, people))


def test_outputs_that_are_not_finite_or_behind_the_camera_are_refused():
    good = {"cam": np.float32([0.9, 0.0, 0.1]), "keypoints_3d": np.zeros((44, 3), np.float32)}
    assert output_problem(good, np.float32([0, 0, 30])) == ""
    assert output_problem({**good, "keypoints_3d": np.full((44, 3), np.nan, np.float32)},
                          np.float32([0, 0, 30])) == "output_not_finite"
    assert output_problem(good, np.float32([0, np.inf, 30])) == "output_not_finite"
    for scale in (MIN_CAMERA_SCALE / 2, 0.0, -0.5):
        assert output_problem({**good, "cam": np.float32([scale, 0, 0])}, np.float32([0, 0, 30])) == "camera_scale"


class Recorded:
    """Stands in for a box source class: records how it was built."""

    made: list = []

    def __init__(self, *args):
        Recorded.made.append((self.name, args))

    def close(self):
        pass


@pytest.fixture()
def recorded_sources(monkeypatch):
    Recorded.made = []
    for name in ("VitDetBoxes", "FasterRcnnBoxes", "BlazePoseBoxes"):
        monkeypatch.setattr(boxes, name, type(name, (Recorded,), {"name": name}))
    return Recorded.made


def test_auto_picks_vitdet_first_where_it_can_run(recorded_sources, monkeypatch, tmp_path):
    weights = tmp_path / "model_final_f05665.pkl"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(boxes, "vitdet_missing", lambda: None)  # as where detectron2 and its config are installed
    make_box_source("auto", "cpu", PRESETS["track"], vitdet_weights_path=weights)
    assert recorded_sources[-1] == ("VitDetBoxes", (weights, 0.8, 0.5, boxes.torch.device("cpu")))
    make_box_source("auto", "cpu", PRESETS["demo"], vitdet_weights_path=weights)
    assert recorded_sources[-1][1][1:3] == (0.5, 0.25)  # demo.py: box heads at 0.25, people above 0.5
    make_box_source("auto", "cpu", vitdet_weights_path=tmp_path / "absent.pkl")  # no weights yet: the next source
    assert recorded_sources[-1][0] == "BlazePoseBoxes"
    make_box_source("auto", "cuda", vitdet_weights_path=tmp_path / "absent.pkl")
    assert recorded_sources[-1][0] == "FasterRcnnBoxes"


def test_without_detectron2_auto_is_what_it_was_and_vitdet_says_why(recorded_sources, monkeypatch, tmp_path):
    weights = tmp_path / "model_final_f05665.pkl"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(boxes, "vitdet_missing", lambda: "detectron2 is not installed")
    make_box_source("auto", "cpu", vitdet_weights_path=weights)
    make_box_source("auto", "cuda", vitdet_weights_path=weights)
    assert [name for name, _ in recorded_sources] == ["BlazePoseBoxes", "FasterRcnnBoxes"]


def test_vitdet_without_detectron2_fails_with_the_reason():
    if boxes.vitdet_missing() is None:
        pytest.skip("detectron2 and its ViTDet config are installed here")
    with pytest.raises(ImportError, match="detectron2"):
        make_box_source("vitdet", "cpu", vitdet_weights_path="/nonexistent/model_final_f05665.pkl")
    with pytest.raises(ValueError, match="vitdet"):
        make_box_source("yolo")


def test_the_thresholds_reach_the_blazepose_source(frame):
    """The preset's score is BlazePose's person-detection confidence; its minimum box size still guards."""
    source = make_box_source("blazepose", "cpu", thresholds("demo", score=0.7))
    try:
        assert isinstance(source, BlazePoseBoxes)
        found = source([frame])[0]
        assert len(found.scores) == 1
        detector = Hmr2Detector(CHECKPOINT, box_source=source, min_box="2000x2000")
        assert detector.detect([frame]) == [[]] and detector.skipped == {"box_too_small": 1}
    finally:
        source.close()


def test_launch_models_reports_vitdet(monkeypatch, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "launch.py"), "models", "--cache-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300).stdout
    (line,) = [line for line in out.splitlines() if line.startswith("vitdet:")]
    assert line == boxes.vitdet_report(tmp_path)
    monkeypatch.setattr(boxes, "vitdet_missing", lambda: "detectron2 is not installed")
    assert "not available: detectron2 is not installed" in boxes.vitdet_report(tmp_path)
    monkeypatch.setattr(boxes, "vitdet_missing", lambda: None)
    assert "weights missing" in boxes.vitdet_report(tmp_path) and "download-models" in boxes.vitdet_report(tmp_path)
    boxes.vitdet_weights(tmp_path).parent.mkdir()
    boxes.vitdet_weights(tmp_path).write_bytes(b"weights")
    assert boxes.vitdet_report(tmp_path).startswith("vitdet: available")
    assert boxes.vitdet_cache(None, tmp_path) == tmp_path


def test_skips_reach_the_detect_metrics():
    from bus.metrics import StageMetrics

    metrics = StageMetrics("detect", "detect-0")
    assert "skipped" not in metrics.snapshot()
    metrics.skipped = {"box_too_small": 2, "camera_scale": 1}
    snapshot = metrics.snapshot()
    validate(snapshot)
    assert snapshot["skipped"] == {"box_too_small": 2, "camera_scale": 1}
