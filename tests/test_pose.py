import numpy as np
import pytest

from pose import angles, camera, skeleton
from pose.detection import Detection, in_source_pixels
from pose.skeleton import JOINT_INDEX


def test_angle_at_a_vertex():
    origin = np.zeros(3)
    assert angles.angle_at(np.array([1.0, 0, 0]), origin, np.array([-1.0, 0, 0])) == pytest.approx(180)
    assert angles.angle_at(np.array([1.0, 0, 0]), origin, np.array([0, 2.0, 0])) == pytest.approx(90)
    assert np.isnan(angles.angle_at(origin, origin, np.array([1.0, 0, 0])))


def straight_body() -> np.ndarray:
    """A person standing straight, arms down, y down (metres)."""
    points = np.full((len(skeleton.CANONICAL_JOINTS), 3), np.nan, np.float32)
    for side, x in (("left", 0.15), ("right", -0.15)):
        points[JOINT_INDEX[f"{side}_shoulder"]] = (x, -0.5, 0)
        points[JOINT_INDEX[f"{side}_elbow"]] = (x, -0.2, 0)
        points[JOINT_INDEX[f"{side}_wrist"]] = (x, 0.05, 0)
        points[JOINT_INDEX[f"{side}_hip"]] = (x, 0, 0)
        points[JOINT_INDEX[f"{side}_knee"]] = (x, 0.45, 0)
        points[JOINT_INDEX[f"{side}_ankle"]] = (x, 0.9, 0)
    points[JOINT_INDEX["pelvis"]] = (0, 0, 0)
    points[JOINT_INDEX["spine"]] = (0, -0.25, 0)
    points[JOINT_INDEX["neck"]] = (0, -0.5, 0)
    return points


def test_straight_body_has_straight_joints():
    measured = angles.joint_angles(straight_body())
    for key in ("leftKnee", "rightKnee", "leftElbow", "rightElbow", "spine", "leftHip", "rightHip"):
        assert measured[key] == pytest.approx(180, abs=1e-3), key
    assert measured["leftShoulder"] == pytest.approx(0, abs=1e-3)


def test_bent_knee_angle():
    body = straight_body()
    body[JOINT_INDEX["left_ankle"]] = body[JOINT_INDEX["left_knee"]] + (0, 0, 0.45)  # shin points back
    assert angles.joint_angles(body)["leftKnee"] == pytest.approx(90, abs=1e-3)


def test_missing_joint_gives_no_angle():
    body = straight_body()
    body[JOINT_INDEX["spine"]] = np.nan
    assert angles.joint_angles(body)["spine"] is None


def test_fit_translation_recovers_the_true_translation():
    K = camera.intrinsics(640, 360)
    body = np.nan_to_num(straight_body()).astype(np.float64)
    truth = np.array([0.3, -0.2, 40.0])
    pixels = camera.project(body + truth, K)
    t = camera.fit_translation(body, pixels, np.ones(len(body)), K)
    np.testing.assert_allclose(t, truth, rtol=1e-6)


def test_default_focal_follows_hmr2():
    assert camera.default_focal(640, 360) == 12_500


def test_canonical_mapping_averages_and_marks_missing():
    native = np.arange(33 * 2, dtype=np.float64).reshape(33, 2)
    mapped = skeleton.to_canonical(native, skeleton.BLAZEPOSE_TO_CANONICAL)
    bp = skeleton.BLAZEPOSE_JOINTS
    np.testing.assert_array_equal(mapped[JOINT_INDEX["left_knee"]], native[bp.index("left_knee")])
    np.testing.assert_array_equal(mapped[JOINT_INDEX["pelvis"]],
                                  (native[bp.index("left_hip")] + native[bp.index("right_hip")]) / 2)
    assert np.isnan(mapped[JOINT_INDEX["spine"]]).all()


@pytest.mark.parametrize("native, mapping", [
    (skeleton.BLAZEPOSE_JOINTS, skeleton.BLAZEPOSE_TO_CANONICAL),
    (skeleton.HMR2_JOINTS, skeleton.HMR2_TO_CANONICAL),
])
def test_mappings_keep_left_and_right(native, mapping):
    for name, sources in zip(skeleton.CANONICAL_JOINTS, mapping):
        for index in sources:
            source = native[index]
            if name.startswith("left_"):
                assert "left" in source and "right" not in source, (name, source)
            if name.startswith("right_"):
                assert "right" in source and "left" not in source, (name, source)


def test_hmr2_mapping_uses_openpose_and_j19_joints():
    by_name = {n: [skeleton.HMR2_JOINTS[i] for i in s] for n, s in
               zip(skeleton.CANONICAL_JOINTS, skeleton.HMR2_TO_CANONICAL)}
    assert by_name["left_knee"] == ["op_left_knee"] and skeleton.HMR2_JOINTS.index("op_left_knee") == 13
    assert by_name["pelvis"] == ["op_mid_hip"] and skeleton.HMR2_JOINTS.index("op_mid_hip") == 8
    assert by_name["spine"] == ["j19_spine_h36m"] and skeleton.HMR2_JOINTS.index("j19_spine_h36m") == 41


def test_detections_on_a_downscaled_frame_map_back_to_source_pixels():
    """Detected on 3840×2160, reported for the 7680×4320 source: pixels double, metres stay."""
    points = straight_body() + np.float32([0, 0, 5])
    small_K, big_K = camera.intrinsics(3840, 2160), camera.intrinsics(7680, 4320)
    pixels = np.hstack([camera.project(points, small_K), np.ones((len(points), 1))]).astype(np.float32)
    d = Detection(bbox=np.float32([100, 200, 30, 40]), score=0.8, keypoints_2d=pixels, keypoints_3d=points,
                  extras={"camera": {"translation": np.float32([0, 0, 5]), "focal_length": small_K[0, 0],
                                     "principal_point": np.float32([1920, 1080])}})
    big = in_source_pixels(d, (7680, 4320), (3840, 2160))
    np.testing.assert_allclose(big.keypoints_2d[:, :2], camera.project(points, big_K), rtol=1e-5)
    np.testing.assert_array_equal(big.keypoints_2d[:, 2], 1)
    np.testing.assert_array_equal(big.bbox, [200, 400, 60, 80])
    assert big.extras["camera"]["focal_length"] == pytest.approx(big_K[0, 0])
    np.testing.assert_array_equal(big.extras["camera"]["principal_point"], big_K[:2, 2])
    assert big.keypoints_3d is points and big.score == 0.8
