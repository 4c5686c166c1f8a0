"""Small builders for tracker tests."""
from __future__ import annotations

import numpy as np

from bench.scenes import BODY_HEIGHT_M, HEIGHT, WIDTH, box_of, walking_pose
from pose.camera import default_focal
from pose.detection import Detection, FrameDetections
from pose.rotations import exp_map


def person(x: float, y: float, height: float = 300.0, score: float = 0.9,
           rotation: np.ndarray | None = None) -> Detection:
    """A standing person 1.7 m tall with pelvis at (x, y) px in a 1280×720 image (HMR 2.0 camera);
    with ``rotation`` (3,) axis-angle it carries SMPL rotmats and a camera translation."""
    focal = default_focal(WIDTH, HEIGHT)
    depth = focal * BODY_HEIGHT_M / height
    translation = np.array([(x - WIDTH / 2) * depth / focal, (y - HEIGHT / 2) * depth / focal, depth])
    pixels = np.array([x, y]) + height * walking_pose(0.0)
    keypoints_3d = np.c_[(pixels - (x, y)) / height * BODY_HEIGHT_M, np.zeros(len(pixels))] + translation
    extras = {}
    if rotation is not None:
        extras["smpl"] = {"global_orient": exp_map(rotation)[None].astype(np.float32),
                          "body_pose": np.repeat(exp_map(rotation)[None], 23, axis=0).astype(np.float32),
                          "betas": np.zeros(10, dtype=np.float32)}
        extras["camera"] = {"translation": translation.astype(np.float32), "focal_length": focal,
                            "principal_point": np.array([WIDTH / 2, HEIGHT / 2], dtype=np.float32)}
    return Detection(bbox=box_of(pixels).astype(np.float32), score=score,
                     keypoints_2d=np.c_[pixels, np.ones(len(pixels))].astype(np.float32),
                     keypoints_3d=keypoints_3d.astype(np.float32), extras=extras)


def frame(index: int, *people: Detection) -> FrameDetections:
    return FrameDetections(index, index * 1000.0 / 30.0, list(people))


def run(tracker, frames) -> list:
    """All tracked frames of a sequence: every push's output, then finish()."""
    out = []
    for f in frames:
        out += tracker.push(f)
    return out + tracker.finish()
