"""BlazePose on real frames of vid.mp4: the right joint at the right place."""
import cv2
import numpy as np
import pytest

from detectors.base import FrameImage
from pose import camera
from pose.skeleton import JOINT_INDEX as J

from conftest import VIDEO


@pytest.fixture(scope="module")
def frames():
    capture = cv2.VideoCapture(str(VIDEO))
    images = [capture.read()[1] for _ in range(91)]
    return [FrameImage("t", i, i * 1000 / 30, image) for i, image in enumerate(images)]


@pytest.fixture(scope="module")
def runner_at_90(frames):
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode="video")
    found = detector.detect(frames)
    detector.close()
    assert all(len(people) == 1 for people in found), "the runner is in every frame"
    return found[90][0]


def along(point, start, end):
    """Where ``point`` projects along segment start→end (0 at start, 1 at end)."""
    segment = end - start
    return float(np.dot(point - start, segment) / np.dot(segment, segment))


@pytest.mark.parametrize("side", ["left", "right"])
def test_knee_lies_between_hip_and_ankle(runner_at_90, side):
    kp = runner_at_90.keypoints_2d[:, :2]
    hip, knee, ankle = kp[J[f"{side}_hip"]], kp[J[f"{side}_knee"]], kp[J[f"{side}_ankle"]]
    thigh, shin = np.linalg.norm(knee - hip), np.linalg.norm(ankle - knee)
    assert 0.2 < along(knee, hip, ankle) < 0.8
    assert 0.3 < thigh / (thigh + shin) < 0.7  # a knee, not a wrist or a foot


def test_body_is_upright_in_image_and_in_3d(runner_at_90):
    for points in (runner_at_90.keypoints_2d, runner_at_90.keypoints_3d):
        y = points[:, 1]  # y points down in both
        assert y[J["nose"]] < y[J["neck"]] < y[J["pelvis"]] < y[J["left_knee"]] < y[J["left_ankle"]]


def test_keypoints_3d_reproject_onto_keypoints_2d(runner_at_90):
    K = camera.intrinsics(1920, 1088)
    present = ~np.isnan(runner_at_90.keypoints_3d[:, 0])
    projected = camera.project(runner_at_90.keypoints_3d[present].astype(np.float64), K)
    error = np.linalg.norm(projected - runner_at_90.keypoints_2d[present, :2], axis=1)
    height = np.ptp(runner_at_90.keypoints_2d[present, 1])
    assert np.median(error) < 0.05 * height


def test_metric_scale_is_human(runner_at_90):
    kp = runner_at_90.keypoints_3d
    thigh = np.linalg.norm(kp[J["left_knee"]] - kp[J["left_hip"]])
    shin = np.linalg.norm(kp[J["left_ankle"]] - kp[J["left_knee"]])
    assert 0.25 < thigh < 0.6 and 0.25 < shin < 0.6


def test_box_contains_the_keypoints(runner_at_90):
    x, y, w, h = runner_at_90.bbox
    kp = runner_at_90.keypoints_2d
    visible = kp[:, 2] > 0.5
    assert ((kp[visible, 0] >= x) & (kp[visible, 0] <= x + w) & (kp[visible, 1] >= y) & (kp[visible, 1] <= y + h)).all()


def test_blazepose_lacks_a_spine_joint_and_says_so(runner_at_90):
    assert np.isnan(runner_at_90.keypoints_3d[J["spine"]]).all() and runner_at_90.keypoints_2d[J["spine"], 2] == 0


def test_static_mode_finds_the_same_runner(frames, runner_at_90):
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode="static")
    (person,) = detector.detect([frames[90]])[0]
    detector.close()
    error = np.linalg.norm(person.keypoints_2d[:17, :2] - runner_at_90.keypoints_2d[:17, :2], axis=1)
    assert np.median(error) < 15
