"""HMR 2.0 crops and full-image camera against 4D-Humans' ViTDetDataset / cam_crop_to_full."""
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.hmr2 import preprocess
from pose.camera import cam_crop_to_full

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".." / "shared" / "fixtures" / "hmr2"
VIDEO = ROOT / ".." / "shared" / "media" / "vid.mp4"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURES / "preprocess.npz"))


@pytest.fixture(scope="module")
def frames(reference):
    wanted = set(reference["frame_index"].tolist())
    capture = cv2.VideoCapture(str(VIDEO))
    frames = {}
    for index in range(max(wanted) + 1):
        ok, frame = capture.read()
        assert ok, f"could not decode frame {index} of {VIDEO}"
        if index in wanted:
            frames[index] = frame
    capture.release()
    for row, index in enumerate(reference["frame_index"]):
        assert hashlib.md5(frames[index].tobytes()).hexdigest() == reference["frame_md5"][row]
    return frames


@pytest.fixture(scope="module")
def crops(reference, frames):
    """Row i of the reference, computed with all boxes of its frame at once."""
    by_row = {}
    for index, image in frames.items():
        rows = np.flatnonzero(reference["frame_index"] == index)
        result = preprocess.crop_people(image, reference["box_xyxy"][rows])
        for k, row in enumerate(rows):
            by_row[row] = (result.images[k], result.box_center[k], result.box_size[k])
    return by_row


@pytest.mark.parametrize("row", range(4))
def test_crop_matches_official(crops, reference, row):
    image, center, size = crops[row]
    np.testing.assert_allclose(image, reference["img"][row], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(center, reference["box_center"][row])
    assert size == reference["box_size"][row]


def test_blur_rows_and_sigmas_match_official(reference):
    _, size = preprocess.square_boxes(reference["box_xyxy"])
    sigma = preprocess.antialias_sigma(size)
    np.testing.assert_array_equal(sigma > 0, reference["blur_applied"])
    np.testing.assert_allclose(sigma, reference["blur_sigma"], rtol=0, atol=0)
    assert reference["blur_applied"].tolist() == [True, False, True, False]


def test_affine_and_expansion_match_official(reference):
    center, size = preprocess.square_boxes(reference["box_xyxy"])
    boxes = reference["box_xyxy"]
    np.testing.assert_array_equal(preprocess.expand_to_aspect(boxes[:, 2:] - boxes[:, :2]), reference["expanded_wh"])
    for row in range(4):
        np.testing.assert_array_equal(preprocess.crop_affine(center[row], float(size[row])), reference["affine"][row])


def test_expansion_grows_to_the_aspect_and_never_shrinks():
    wh = np.random.default_rng(0).uniform(5, 2000, size=(500, 2)).astype(np.float32)
    grown = preprocess.expand_to_aspect(wh)
    assert (grown >= wh).all()
    np.testing.assert_allclose(grown[:, 1] / grown[:, 0], 256 / 192, rtol=1e-5)
    assert ((grown == wh).any(axis=1)).all()


def test_whole_image_is_blurred_once_per_sigma(monkeypatch, frames):
    calls = []
    real_blur = preprocess.gaussian_blur

    def counting_blur(image, sigma):
        calls.append(sigma)
        return real_blur(image, sigma)

    monkeypatch.setattr(preprocess, "gaussian_blur", counting_blur)
    boxes = np.array([[100, 100, 400, 900], [900, 100, 1200, 900], [0, 0, 100, 100]], dtype=np.float32)
    preprocess.crop_people(frames[0], boxes)
    assert len(calls) == 1


def test_cam_crop_to_full_matches_official(reference):
    args = (reference["cam/pred_cam"], reference["cam/box_center_f32"], reference["cam/box_size_f32"],
            reference["cam/img_size_f32"])
    np.testing.assert_allclose(cam_crop_to_full(*args, reference["cam/scaled_focal_length"]),
                               reference["cam/pred_cam_t_full"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cam_crop_to_full(*args), reference["cam/pred_cam_t_full_f5000"], rtol=1e-6, atol=1e-6)
