"""One focal-length rule for every detector: the checkpoint's crop focal over the longer side, or --fov."""
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detectors.base import FrameImage
from detectors.blazepose import Pose, pose_detection
from detectors.hmr2.checkpoint import config_from_json
from detectors.hmr2.detector import Hmr2Detector, PersonBoxes
from pose import camera
from pose.skeleton import BLAZEPOSE_TO_CANONICAL, to_canonical
from stages.track.stage import public_job_start

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "hmr2"
CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"


def test_the_rule():
    assert camera.image_focal(640, 360) == camera.default_focal(640, 360) == 12_500
    assert camera.image_focal(640, 360, crop_focal=2500, crop_size=256) == 6_250
    assert camera.image_focal(1920, 1080, fov_degrees=90) == pytest.approx(960)
    assert camera.image_focal(1080, 1920, fov_degrees=60) == pytest.approx(960 / math.tan(math.radians(30)))
    # The default is a narrow field of view: about 2.9 degrees across the longer side.
    assert 2 * math.degrees(math.atan(0.5 / (5000 / 256))) == pytest.approx(2.93, abs=0.01)
    with pytest.raises(ValueError, match="between 0 and 180"):
        camera.focal_from_fov(180, 640, 360)


class Runner:
    def __call__(self, frames):
        return [PersonBoxes(np.float32([[795, 200, 1125, 1000]]), np.float32([1.0])) for _ in frames]

    def close(self):
        pass


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    return FrameImage("j", 0, 0.0, rng.integers(0, 255, (1088, 1920, 3), np.uint8))


def test_hmr2_takes_the_crop_focal_from_the_checkpoint_and_the_full_focal_from_fov(frame):
    small = config_from_json(FIXTURES / "small_config.json")
    default = Hmr2Detector(CHECKPOINT, box_source=Runner(), config=small).detect([frame])[0][0]
    halved = Hmr2Detector(CHECKPOINT, box_source=Runner(), config=replace(small, focal_length=2500.0))
    assert halved.image_focal(1920, 1088) == pytest.approx(2500 / 256 * 1920)
    wide = Hmr2Detector(CHECKPOINT, box_source=Runner(), fov=60.0)
    person = wide.detect([frame])[0][0]
    focal = 960 / math.tan(math.radians(30))
    assert person.extras["camera"]["focal_length"] == pytest.approx(focal)
    # Only the depth follows the focal (the crop camera's tz = 2f / (s · box)); the body is the same.
    t_default, t_wide = default.extras["camera"]["translation"], person.extras["camera"]["translation"]
    np.testing.assert_allclose(t_wide[:2], t_default[:2], rtol=1e-5)
    assert t_wide[2] / t_default[2] == pytest.approx(focal / camera.default_focal(1920, 1088), rel=1e-5)
    np.testing.assert_allclose(person.extras["keypoints_3d_native"], default.extras["keypoints_3d_native"])
    K = camera.intrinsics(1920, 1088, focal)
    reprojected = camera.project(person.keypoints_3d.astype(np.float64), K)
    assert np.abs(reprojected - person.keypoints_2d[:, :2]).max() < 0.5
    # The box still lands where it was: the projected body stays inside the given box's neighbourhood.
    assert 700 < np.median(person.keypoints_2d[:, 0]) < 1200


def test_blazepose_places_its_pose_with_the_fov_focal():
    rng = np.random.default_rng(1)
    world = rng.normal(0, 0.3, (33, 3)).astype(np.float32)
    translation = np.array([0.2, -0.1, 4.0])
    K = camera.intrinsics(640, 360, camera.image_focal(640, 360, fov_degrees=70))
    pixels = camera.project(world + translation, K)
    image = np.concatenate([pixels, np.ones((33, 2))], axis=1).astype(np.float32)
    found = pose_detection(Pose(image=image, world=world, score=1.0), 640, 360, fov=70)
    expected = to_canonical((world + translation).astype(np.float64), BLAZEPOSE_TO_CANONICAL)
    present = ~np.isnan(expected).any(axis=1)
    np.testing.assert_allclose(found.keypoints_3d[present], expected[present], atol=1e-3)
    default = pose_detection(Pose(image=image, world=world, score=1.0), 640, 360)
    assert np.abs(default.keypoints_3d[present] - expected[present]).max() > 1  # the default focal misplaces it


def test_job_start_intrinsics_are_the_detectors_focal():
    start = {"type": "job_start", "schema": 1, "job": "j", "source": "x", "fps": 30.0, "width": 1920, "height": 1080,
             "frame_count": 1, "options": {"detector": "hmr2"}}
    assert public_job_start(start, None)["intrinsics"]["fx"] == camera.default_focal(1920, 1080)
    assert public_job_start(start, {"focal_length": 960.0})["intrinsics"]["fx"] == 960.0
    downscaled = {**start, "downscaled": {"width": 960, "height": 540}}  # the detector saw half the pixels
    intrinsics = public_job_start(downscaled, {"focal_length": 480.0})["intrinsics"]
    assert (intrinsics["fx"], intrinsics["fy"], intrinsics["cx"]) == (960.0, 960.0, 960.0)


def test_a_job_may_ask_for_the_fov_and_precision_its_workers_run():
    """Workers load one model at one precision and place people with one focal: a job gets those or is refused."""
    import argparse

    from bus.messages import JOB_OPTIONS
    from bus.schema import check
    from launcher.pipeline import Pipeline

    check({"fov": 60.0, "precision": "int8"}, JOB_OPTIONS, "job options")
    pipeline = Pipeline.__new__(Pipeline)  # what refusal reads: the launcher's settings and detector kinds
    pipeline.args = argparse.Namespace(detector="hmr2", fov=60.0, precision="int8", second_look=True)
    pipeline.kinds = ("hmr2",)
    assert pipeline.refusal({"fov": 60.0, "precision": "int8"}) is None
    assert "--fov 70" in pipeline.refusal({"fov": 70.0})
    assert "--precision fp32" in pipeline.refusal({"precision": "fp32"})
