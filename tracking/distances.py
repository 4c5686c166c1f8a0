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
from pose.skeleton import hip_centre
from tracking.arrays import norm

LOCATION_SIGMA, LOCATION_SIGMA_GROWTH = 0.1, 0.05  # body heights
SIZE_SIGMA = 0.2  # log ratio
POSE_SCALE = 0.25  # metres (3D) or body heights (2D) of mean joint offset that count as "different"


class DistanceFunction(Protocol):
    def __call__(self, expected: Sequence[Detection], detections: Sequence[Detection],
                 frames_since_seen: np.ndarray) -> np.ndarray: ...


def body_positions(detections: Sequence[Detection]) -> np.ndarray:
    """(N, 3) m: each body's 3D position, the camera translation, else the mean of its 3D hips; NaN where unknown.

    The hips are averaged for all detections in one stacked operation (the tracker asks for
    every track and detection of a frame).
    """
    positions = np.full((len(detections), 3), np.nan)
    from_hips = []
    for i, d in enumerate(detections):
        camera = d.extras.get("camera")
        if camera is not None:
            positions[i] = camera["translation"]
        elif d.keypoints_3d is not None:
            from_hips.append(i)
    if from_hips:
        centres = hip_centre(np.array([detections[i].keypoints_3d for i in from_hips], dtype=np.float64))[:, 0]
        complete = ~np.isnan(centres).any(axis=1)
        positions[np.array(from_hips)[complete]] = centres[complete]
    return positions


def body_position(d: Detection) -> np.ndarray | None:
    """3D position (3,) m of the body (see ``body_positions``), None when unknown."""
    position = body_positions([d])[0]
    return None if np.isnan(position).all() else position


def location_distance(expected: Sequence[Detection], detections: Sequence[Detection],
                      frames_since_seen: np.ndarray) -> np.ndarray:
    """(T, D): centre offset in body heights / uncertainty + (|log height ratio| + |log depth ratio|) / SIZE_SIGMA."""
    a = np.array([e.bbox for e in expected], dtype=np.float64)
    b = np.array([d.bbox for d in detections], dtype=np.float64)
    a_centre, b_centre = a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    a_height, b_height = np.maximum(a[:, 3], 1.0), np.maximum(b[:, 3], 1.0)
    scale = np.sqrt(a_height[:, None] * b_height[None, :])
    uncertainty = LOCATION_SIGMA + LOCATION_SIGMA_GROWTH * np.asarray(frames_since_seen, dtype=np.float64)
    offset = norm(a_centre[:, None] - b_centre[None]) / scale / uncertainty[:, None]
    depth_change = np.abs(np.log(_depths(expected)[:, None] / _depths(detections)[None, :]))
    size_change = (np.abs(np.log(a_height[:, None] / b_height[None, :]))
                   + np.where(np.isnan(depth_change), 0.0, depth_change))
    return offset + size_change / SIZE_SIGMA


def _depths(detections: Sequence[Detection]) -> np.ndarray:
    """(N,) depth z (m) of each body, NaN when unknown or not in front of the camera."""
    depths = body_positions(detections)[:, 2]
    return np.where(depths > 0, depths, np.nan)


def _root_relative(points: np.ndarray) -> np.ndarray:
    """(N, J, C) -> the same minus each pose's hip centre (NaN if a hip is missing)."""
    return points - hip_centre(points)


def _mean_joint_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, J, C), (D, J, C) -> (T, D) mean distance over joints both have; 0 if none."""
    per_joint = norm(a[:, None] - b[None])
    missing = np.isnan(per_joint)
    if not missing.any():
        return per_joint.sum(axis=-1) / per_joint.shape[-1]
    return np.where(missing, 0.0, per_joint).sum(axis=-1) / np.maximum((~missing).sum(axis=-1), 1)


def pose_distance(expected: Sequence[Detection], detections: Sequence[Detection],
                  frames_since_seen: np.ndarray) -> np.ndarray:
    """(T, D) root-relative pose distance, in units of POSE_SCALE; 0 where incomparable."""
    if all(e.keypoints_3d is not None for e in expected) and all(d.keypoints_3d is not None for d in detections):
        a = _root_relative(np.array([e.keypoints_3d for e in expected], dtype=np.float64))
        b = _root_relative(np.array([d.keypoints_3d for d in detections], dtype=np.float64))
        return _mean_joint_distance(a, b) / POSE_SCALE
    a = np.array([e.keypoints_2d[:, :2] / max(e.bbox[3], 1.0) for e in expected], dtype=np.float64)
    b = np.array([d.keypoints_2d[:, :2] / max(d.bbox[3], 1.0) for d in detections], dtype=np.float64)
    return _mean_joint_distance(_root_relative(a), _root_relative(b)) / POSE_SCALE


def appearance_distance(expected: Sequence[Detection], detections: Sequence[Detection],
                        frames_since_seen: np.ndarray) -> np.ndarray:
    """(T, D) cosine distance in [0, 2] of appearance vectors; 0 where either has none."""
    cost = np.zeros((len(expected), len(detections)))
    a = [e.extras.get("appearance") for e in expected]
    b = [d.extras.get("appearance") for d in detections]
    rows = [i for i, v in enumerate(a) if v is not None]
    cols = [j for j, v in enumerate(b) if v is not None]
    if rows and cols:
        A = np.array([a[i] for i in rows], dtype=np.float64)
        B = np.array([b[j] for j in cols], dtype=np.float64)
        A /= np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
        B /= np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
        if len(rows) == len(a) and len(cols) == len(b):
            return 1.0 - A @ B.T
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
