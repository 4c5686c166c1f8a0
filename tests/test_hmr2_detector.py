"""Hmr2Detector on real frames of the seed video, with the small parity checkpoint."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from bus.messages import detections, validate
from detectors.base import FrameImage
from detectors.hmr2.detector import BlazePoseBoxes, Hmr2Detector, PersonBoxes, make_box_source
from pose.camera import intrinsics, project
from pose.skeleton import CANONICAL_JOINTS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / ".." / "shared" / "fixtures" / "hmr2"
VIDEO = ROOT / ".." / "shared" / "media" / "vid.mp4"
CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"
FRAMES = (0, 90)


@pytest.fixture(scope="module")
def frames():
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    for index in range(max(FRAMES) + 1):
        ok, image = capture.read()
        assert ok, f"could not decode frame {index} of {VIDEO}"
        if index in FRAMES:
            frames.append(FrameImage(job="vid", index=index, pts_ms=index * 1000 / 30, image=image))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def preprocess_reference():
    return dict(np.load(FIXTURES / "preprocess.npz"))


@pytest.fixture(scope="module")
def io_reference():
    return dict(np.load(FIXTURES / "io.npz"))


class FixedBoxes:
    """The fixture's boxes for each frame (runner first)."""

    def __init__(self, reference: dict, rows_per_frame: dict[int, list[int]]):
        self.reference, self.rows_per_frame, self.calls = reference, rows_per_frame, []

    def __call__(self, images):
        self.calls.append(len(images))
        frames = list(self.rows_per_frame.values())[:len(images)]
        return [PersonBoxes(self.reference["box_xyxy"][rows], np.ones(len(rows), np.float32)) for rows in frames]

    def close(self):
        pass


def iou(xywh: np.ndarray, xyxy: np.ndarray) -> float:
    a = np.array([xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3]])
    inter = np.prod(np.clip(np.minimum(a[2:], xyxy[2:]) - np.maximum(a[:2], xyxy[:2]), 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(xyxy[2:] - xyxy[:2]) - inter)


def test_detections_match_the_official_pipeline(frames, preprocess_reference, io_reference):
    """Fixture boxes in, so crops, network and full-image camera are the official ones end to end."""
    detector = Hmr2Detector(CHECKPOINT, box_source=FixedBoxes(preprocess_reference, {0: [0], 90: [2]}), mesh=True)
    result = detector.detect(frames)
    assert [len(people) for people in result] == [1, 1]
    for io_row, (frame, people) in enumerate(zip(frames, result)):
        person = people[0]
        preprocess_row = io_reference["meta/img_source_preprocess_row"][io_row]
        np.testing.assert_allclose(person.extras["camera"]["translation"],
                                   preprocess_reference["cam/pred_cam_t_full"][preprocess_row], rtol=1e-4)
        np.testing.assert_allclose(person.extras["keypoints_3d_native"], io_reference["pred_keypoints_3d"][io_row],
                                   atol=1e-5)
        np.testing.assert_allclose(person.extras["vertices"], io_reference["pred_vertices"][io_row], atol=1e-5)
        for key in ("global_orient", "body_pose", "betas"):
            np.testing.assert_allclose(person.extras["smpl"][key], io_reference[f"pred_smpl_params/{key}"][io_row],
                                       atol=1e-5)
        validate(detections(frame.job, frame.index, frame.pts_ms, people))
    assert detector.faces.shape == (13776, 3) and detector.faces.dtype == np.int32


def test_blazepose_boxes_find_the_runner(frames, preprocess_reference):
    detector = Hmr2Detector(CHECKPOINT, box_source=BlazePoseBoxes())
    try:
        result = detector.detect(frames)
    finally:
        detector.close()
    runner_rows = {0: 0, 90: 2}
    for frame, people in zip(frames, result):
        assert len(people) == 1
        person = people[0]
        assert iou(person.bbox, preprocess_reference["box_xyxy"][runner_rows[frame.index]]) > 0.6
        assert person.keypoints_2d.shape == person.keypoints_3d.shape == (len(CANONICAL_JOINTS), 3)
        assert person.keypoints_2d.dtype == person.keypoints_3d.dtype == np.float32
        np.testing.assert_array_equal(person.keypoints_2d[:, 2], 1.0)
        height, width = frame.image.shape[:2]
        reprojected = project(person.keypoints_3d.astype(np.float64), intrinsics(width, height))
        assert np.abs(reprojected - person.keypoints_2d[:, :2]).max() < 0.5
        assert person.extras["camera"]["focal_length"] == pytest.approx(5000 / 256 * 1920)
        assert "vertices" not in person.extras
        validate(detections(frame.job, frame.index, frame.pts_ms, people))


def test_batch_size_does_not_change_results(frames, preprocess_reference):
    boxes = {0: [0, 1], 90: [2, 3]}
    one = Hmr2Detector(CHECKPOINT, box_source=FixedBoxes(preprocess_reference, boxes), batch_size=1).detect(frames)
    four = Hmr2Detector(CHECKPOINT, box_source=FixedBoxes(preprocess_reference, boxes), batch_size=4).detect(frames)
    for people_one, people_four in zip(one, four):
        assert len(people_one) == len(people_four) == 2
        for a, b in zip(people_one, people_four):
            np.testing.assert_allclose(a.keypoints_3d, b.keypoints_3d, rtol=1e-6, atol=1e-5)
            np.testing.assert_array_equal(a.bbox, b.bbox)


def test_frames_without_people(frames):
    class NoBoxes:
        def __call__(self, images):
            return [PersonBoxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) for _ in images]

        def close(self):
            pass

    detector = Hmr2Detector(CHECKPOINT, box_source=NoBoxes())
    assert detector.detect(frames) == [[], []]
    assert detector.detect([]) == []


def test_box_sources_by_name():
    source = make_box_source("auto", "cpu")
    assert isinstance(source, BlazePoseBoxes)
    source.close()
    with pytest.raises(ValueError, match="blazepose"):
        make_box_source("yolo")
