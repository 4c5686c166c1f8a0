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
    assert all(len(people) == 1 for people in found), "the runner, alone, is in every frame"
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


def test_the_runner_alone_is_found_and_first_is_the_largest(frames):
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode="video", num_poses=4)
    found = detector.detect(frames[:10])
    detector.close()
    assert all(len(people) >= 1 for people in found)
    for people in found:
        areas = [p.bbox[2] * p.bbox[3] for p in people]
        assert areas == sorted(areas, reverse=True)


def test_a_jump_starts_a_fresh_landmarker_and_still_finds_the_runner(frames):
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode="video", max_gap=4)
    first = detector.detect([frames[0]])[0]
    job = frames[0].job
    landmarker = detector._jobs[job].landmarker
    detector.detect([frames[2]])
    assert detector._jobs[job].landmarker is landmarker  # a gap of 2: tracking goes on
    (person,) = detector.detect([frames[60]])[0]  # a jump: a fresh landmarker, VIDEO timestamps restart
    assert detector._jobs[job].landmarker is not landmarker
    landmarker = detector._jobs[job].landmarker
    (other_job,) = detector.detect([FrameImage("u", 0, 0.0, frames[90].image)])[0]
    detector.detect([frames[61]])  # another job's frame in between (jobs side by side): this one's goes on
    assert detector._jobs[job].landmarker is landmarker and detector._jobs["u"].landmarker is not landmarker
    detector.close()
    assert len(first) == 1 and person.score > 0.5 and other_job.score > 0.5


@pytest.mark.parametrize("model", ["lite", "heavy"])
def test_every_model_finds_the_runner(frames, runner_at_90, model):
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode="static", model=model)
    (person,) = detector.detect([frames[90]])[0]
    detector.close()
    error = np.linalg.norm(person.keypoints_2d[:17, :2] - runner_at_90.keypoints_2d[:17, :2], axis=1)
    assert np.median(error) < 20


def test_pose_finder_gives_landmarks_in_the_pixels_of_the_image_it_is_given(frames, runner_at_90):
    """The primitive for second looks: a crop's landmarks are in the crop; shifted back they sit on the runner."""
    from detectors.blazepose import Pose, PoseFinder
    from pose.skeleton import BLAZEPOSE_JOINTS

    left, top = 380, 120
    crop = frames[90].image[top:top + 900, left:left + 800]
    finder = PoseFinder(model="full")
    (pose,) = finder(crop)
    assert finder(np.zeros((240, 320, 3), np.uint8)) == []  # nothing to find: no pose, no error
    finder.close()
    assert isinstance(pose, Pose) and 0.5 < pose.score <= 1
    assert pose.image.shape == (len(BLAZEPOSE_JOINTS), 4) and pose.world.shape == (len(BLAZEPOSE_JOINTS), 3)
    assert ((pose.image[:, 2:] >= 0) & (pose.image[:, 2:] <= 1)).all()
    x, y, w, h = pose.box(crop.shape[1], crop.shape[0])
    assert 0 <= x and x + w <= crop.shape[1] and 0 <= y and y + h <= crop.shape[0]
    nose, ankle = BLAZEPOSE_JOINTS.index("nose"), BLAZEPOSE_JOINTS.index("left_ankle")
    in_frame = pose.image[[nose, ankle], :2] + [left, top]
    np.testing.assert_allclose(in_frame, runner_at_90.keypoints_2d[[J["nose"], J["left_ankle"]], :2], atol=25)
    assert 1.0 < pose.world[ankle, 1] - pose.world[nose, 1] < 2.0  # metres, y down


def test_static_mode_finds_the_same_runner(frames, runner_at_90):
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode="static")
    (person,) = detector.detect([frames[90]])[0]
    detector.close()
    error = np.linalg.norm(person.keypoints_2d[:17, :2] - runner_at_90.keypoints_2d[:17, :2], axis=1)
    assert np.median(error) < 15
