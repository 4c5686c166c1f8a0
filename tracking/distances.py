"""Distances between what tracks expect and what was detected.

A distance is any callable ``(expected, detections, frames_since_seen) -> (T, D)
float`` where ``expected`` are the tracks' predicted Detections at this frame,
``frames_since_seen`` (T,) how long each track has been unobserved (≥ 1), and
lower is closer; ``CombinedDistance`` is the default. Each term is scaled so
that about 1 means "clearly not the same person":
- location: box centre offset in body heights over the prediction's
  uncertainty ``LOCATION_SIGMA + LOCATION_SIGMA_GROWTH · frames_since_seen``
  (a track unseen for longer may have strayed further), plus the log ratio of
  box heights and, when both carry a 3D body position, of depths (PHALP's
  n_log), over ``SIZE_SIGMA``;
- pose: root-relative 3D keypoints (mean joint distance / 0.25 m) when both have
  them, else root-relative 2D keypoints in body heights (/ 0.25);
- appearance: cosine distance of ``extras["appearance"]`` vectors; 0 (no
  evidence either way) when either lacks one.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pose.detection import Detection
from pose.skeleton import JOINT_INDEX

LOCATION_SIGMA, LOCATION_SIGMA_GROWTH = 0.1, 0.05  # body heights
SIZE_SIGMA = 0.2  # log ratio
POSE_SCALE = 0.25  # metres (3D) or body heights (2D) of mean joint offset that count as "different"
_HIPS = [JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]]


class DistanceFunction(Protocol):
    def __call__(self, expected: Sequence[Detection], detections: Sequence[Detection],
                 frames_since_seen: np.ndarray) -> np.ndarray: ...


def body_position(d: Detection) -> np.ndarray | None:
    """3D position (3,) m of the body: the camera translation, else the mean of the 3D hips."""
    camera = d.extras.get("camera")
    if camera is not None:
        return np.asarray(camera["translation"], dtype=np.float64)
    if d.keypoints_3d is not None:
        hips = d.keypoints_3d[_HIPS].astype(np.float64)
        if not np.isnan(hips).any():
            return hips.mean(axis=0)
    return None


def location_distance(expected: Sequence[Detection], detections: Sequence[Detection],
                      frames_since_seen: np.ndarray) -> np.ndarray:
    """(T, D): centre offset in body heights / uncertainty + (|log height ratio| + |log depth ratio|) / SIZE_SIGMA."""
    a = np.stack([e.bbox for e in expected]).astype(np.float64)
    b = np.stack([d.bbox for d in detections]).astype(np.float64)
    a_centre, b_centre = a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    a_height, b_height = np.maximum(a[:, 3], 1.0), np.maximum(b[:, 3], 1.0)
    scale = np.sqrt(a_height[:, None] * b_height[None, :])
    uncertainty = LOCATION_SIGMA + LOCATION_SIGMA_GROWTH * np.asarray(frames_since_seen, dtype=np.float64)
    offset = np.linalg.norm(a_centre[:, None] - b_centre[None], axis=-1) / scale / uncertainty[:, None]
    a_depth = np.array([_depth(e) for e in expected])
    b_depth = np.array([_depth(d) for d in detections])
    depth_change = np.abs(np.log(a_depth[:, None] / b_depth[None, :]))
    size_change = np.abs(np.log(a_height[:, None] / b_height[None, :])) + np.where(np.isnan(depth_change), 0.0, depth_change)
    return offset + size_change / SIZE_SIGMA


def _depth(d: Detection) -> float:
    """Depth z (m) of the body, NaN when unknown or not in front of the camera."""
    position = body_position(d)
    return float(position[2]) if position is not None and position[2] > 0 else np.nan


def _root_relative(points: np.ndarray) -> np.ndarray:
    """(N, J, C) -> the same minus each pose's hip centre (NaN if a hip is missing)."""
    return points - points[:, _HIPS].mean(axis=1, keepdims=True)


def _mean_joint_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, J, C), (D, J, C) -> (T, D) mean distance over joints both have; NaN if none."""
    per_joint = np.linalg.norm(a[:, None] - b[None], axis=-1)
    both = ~np.isnan(per_joint)
    count = both.sum(axis=-1)
    total = np.where(both, per_joint, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pose_distance(expected: Sequence[Detection], detections: Sequence[Detection],
                  frames_since_seen: np.ndarray) -> np.ndarray:
    """(T, D) root-relative pose distance, in units of POSE_SCALE; 0 where incomparable."""
    if all(e.keypoints_3d is not None for e in expected) and all(d.keypoints_3d is not None for d in detections):
        a = _root_relative(np.stack([e.keypoints_3d for e in expected]).astype(np.float64))
        b = _root_relative(np.stack([d.keypoints_3d for d in detections]).astype(np.float64))
        return np.nan_to_num(_mean_joint_distance(a, b)) / POSE_SCALE
    a = np.stack([e.keypoints_2d[:, :2] / max(e.bbox[3], 1.0) for e in expected]).astype(np.float64)
    b = np.stack([d.keypoints_2d[:, :2] / max(d.bbox[3], 1.0) for d in detections]).astype(np.float64)
    return np.nan_to_num(_mean_joint_distance(_root_relative(a), _root_relative(b))) / POSE_SCALE


def appearance_distance(expected: Sequence[Detection], detections: Sequence[Detection],
                        frames_since_seen: np.ndarray) -> np.ndarray:
    """(T, D) cosine distance in [0, 2] of appearance vectors; 0 where either has none."""
    cost = np.zeros((len(expected), len(detections)))
    a = [e.extras.get("appearance") for e in expected]
    b = [d.extras.get("appearance") for d in detections]
    rows = [i for i, v in enumerate(a) if v is not None]
    cols = [j for j, v in enumerate(b) if v is not None]
    if rows and cols:
        A = np.stack([a[i] for i in rows]).astype(np.float64)
        B = np.stack([b[j] for j in cols]).astype(np.float64)
        A /= np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
        B /= np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
        cost[np.ix_(rows, cols)] = 1.0 - A @ B.T
    return cost


class CombinedDistance:
    """weights · (location, pose, appearance)."""

    def __init__(self, location: float = 1.0, pose: float = 0.5, appearance: float = 2.0):
        self.weights = (location, pose, appearance)

    def __call__(self, expected: Sequence[Detection], detections: Sequence[Detection],
                 frames_since_seen: np.ndarray) -> np.ndarray:
        terms = (location_distance, pose_distance, appearance_distance)
        return sum(w * term(expected, detections, frames_since_seen) for w, term in zip(self.weights, terms) if w)
