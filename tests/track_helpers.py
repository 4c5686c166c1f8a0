"""Small builders for tracker tests."""
from __future__ import annotations

import numpy as np

from bench.scenes import box_of, walking_pose
from pose.detection import Detection, FrameDetections
from tracking.rotations import exp_map


def person(x: float, y: float, height: float = 300.0, score: float = 0.9, rotation: np.ndarray | None = None,
           depth: float = 5.0) -> Detection:
    """A standing person with pelvis at (x, y) px; with ``rotation`` (3,) axis-angle it carries SMPL rotmats."""
    pixels = np.array([x, y]) + height * walking_pose(0.0)
    keypoints_3d = np.c_[(pixels - (x, y)) / height * 1.7, np.zeros(len(pixels))] + (0.0, 0.0, depth)
    extras = {}
    if rotation is not None:
        extras["smpl"] = {"global_orient": exp_map(rotation)[None].astype(np.float32),
                          "body_pose": np.repeat(exp_map(rotation)[None], 23, axis=0).astype(np.float32),
                          "betas": np.zeros(10, dtype=np.float32)}
        extras["camera"] = {"translation": np.array([0.0, 0.0, depth], dtype=np.float32), "focal_length": 5000.0,
                            "principal_point": np.array([640.0, 360.0], dtype=np.float32)}
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
