"""detectors.hmr2.reposer: what follows from HMR 2.0's SMPL parameters, derived again from tracked ones."""
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from smplx.lbs import batch_rigid_transform

from detectors.base import FrameImage
from detectors.hmr2.detector import Hmr2Detector
from detectors.hmr2.reposer import Reposer, camera_matrix, find_reposer
from outputs.animation import SMPL_JOINTS_IN_NATIVE, SMPL_PARENTS, smpl_model_from_checkpoint, smpl_rest_joints
from pose.camera import project
from pose.skeleton import HMR2_TO_CANONICAL, to_canonical
from tracking.fields import blend, from_fields, to_fields

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / ".." / "shared" / "fixtures" / "hmr2" / "small_checkpoint.ckpt"
VIDEO = ROOT / ".." / "shared" / "media" / "vid.mp4"
FRAMES = (0, 60)


@pytest.fixture(scope="module")
def detections():
    """The runner on two frames far apart, as Hmr2Detector publishes them (with the mesh)."""
    capture = cv2.VideoCapture(str(VIDEO))
    images = []
    for index in range(max(FRAMES) + 1):
        ok, image = capture.read()
        assert ok
        if index in FRAMES:
            images.append(FrameImage(job="vid", index=index, pts_ms=index * 1000 / 30, image=image))
    capture.release()
    detector = Hmr2Detector(CHECKPOINT, box_source="blazepose", mesh=True)
    try:
        found = detector.detect(images)
    finally:
        detector.close()
    assert all(len(people) == 1 for people in found)
    return [people[0] for people in found]


def smpl_joints(detection) -> np.ndarray:
    """(24, 3) SMPL's joints posed with the detection's parameters: rest joints of its betas (numpy, from the
    checkpoint's arrays) through smplx's rigid transforms, apart from the SMPL layer the reposer runs."""
    smpl = smpl_model_from_checkpoint(CHECKPOINT)
    params = detection.extras["smpl"]
    rest = smpl_rest_joints(smpl, np.asarray(params["betas"], dtype=np.float64))
    rotations = np.concatenate([params["global_orient"], params["body_pose"]]).astype(np.float64)
    posed, _ = batch_rigid_transform(torch.tensor(rotations)[None], torch.tensor(rest)[None],
                                     torch.tensor(SMPL_PARENTS))
    return posed[0].numpy()


def native_smpl_rows(detection) -> np.ndarray:
    native = detection.extras["keypoints_3d_native"]
    return np.array([native[k] for k in SMPL_JOINTS_IN_NATIVE]), list(SMPL_JOINTS_IN_NATIVE.values())


def test_a_detection_as_the_detector_made_it_is_unchanged(detections):
    reposer = find_reposer(CHECKPOINT)
    for before, after in zip(detections, reposer(detections)):
        assert np.abs(after.extras["keypoints_3d_native"] - before.extras["keypoints_3d_native"]).max() < 1e-5
        assert np.abs(after.extras["vertices"] - before.extras["vertices"]).max() < 1e-5
        assert np.abs(after.keypoints_3d - before.keypoints_3d)[~np.isnan(before.keypoints_3d)].max() < 1e-5
        assert np.array_equal(np.isnan(after.keypoints_3d), np.isnan(before.keypoints_3d))
        assert np.abs(after.keypoints_2d - before.keypoints_2d)[~np.isnan(before.keypoints_2d)].max() < 1e-2


def test_filled_values_are_one_body_again(detections):
    """Halfway between two frames the tracker blends each field on its own (the keypoints linearly, the
    rotations by slerp): the native keypoints leave the SMPL body of the blended parameters. Reposed, they
    are that body again, and keypoints_3d and keypoints_2d follow from them and the camera."""
    first, last = detections
    filled = from_fields(first, blend(to_fields(first), to_fields(last), 0.5))
    native, rows = native_smpl_rows(filled)
    apart = np.linalg.norm(native - smpl_joints(filled)[rows], axis=-1).max()
    assert apart > 0.001  # metres: blending each field on its own is not one body

    (reposed,) = Reposer(find_reposer(CHECKPOINT).smpl)([filled])
    native, rows = native_smpl_rows(reposed)
    assert np.linalg.norm(native - smpl_joints(reposed)[rows], axis=-1).max() < 1e-5
    camera = reposed.extras["camera"]
    expected_3d = to_canonical(reposed.extras["keypoints_3d_native"] + camera["translation"], HMR2_TO_CANONICAL)
    present = ~np.isnan(expected_3d).any(axis=1)
    assert np.allclose(reposed.keypoints_3d[present], expected_3d[present], atol=1e-6)
    assert np.allclose(reposed.keypoints_2d[present, :2], project(expected_3d[present], camera_matrix(camera)),
                       atol=1e-3)
    assert reposed.extras["smpl"] is filled.extras["smpl"] and np.array_equal(reposed.bbox, filled.bbox)
    print(f"blended native SMPL joints were {apart * 100:.2f} cm from the blended parameters' body")


def test_no_checkpoint_no_reposer(tmp_path):
    assert find_reposer(tmp_path / "missing.ckpt") is None


def test_the_track_stage_reposes_hmr2_jobs_and_survives_a_bad_checkpoint(tmp_path, caplog):
    from stages.track.stage import job_reposer

    log = logging.getLogger("posebus.test")
    assert job_reposer("a", {"detector": "blazepose", "checkpoint": str(CHECKPOINT)}, log) is None
    assert isinstance(job_reposer("b", {"detector": "hmr2", "checkpoint": str(CHECKPOINT)}, log), Reposer)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert job_reposer("c", {"detector": "hmr2", "checkpoint": str(tmp_path / "missing.ckpt")}, log) is None
        assert job_reposer("d", {"detector": "hmr2", "checkpoint": str(garbage)}, log) is None
    lines = [r.getMessage() for r in caplog.records if "smpl_model_missing" in r.getMessage()]
    assert len(lines) == 2 and "job=c" in lines[0] and "cannot read" in lines[1]
