"""Pinhole camera maths (OpenCV axes: x right, y down, z forward, metres).

Intrinsics follow HMR 2.0's full-image convention for every detector, so
that all detectors report the same camera:
focal ``f = 5000 / 256 · max(W, H)`` pixels, principal point at the image centre.
"""
from __future__ import annotations

import numpy as np

HMR2_FOCAL = 5000.0
HMR2_CROP = 256


def default_focal(width: int, height: int) -> float:
    """Focal length in pixels for a W×H image."""
    return HMR2_FOCAL / HMR2_CROP * max(width, height)


def intrinsics(width: int, height: int, focal: float | None = None) -> np.ndarray:
    """K (3, 3) for a W×H image."""
    f = default_focal(width, height) if focal is None else focal
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) -> pixels (..., 2)."""
    uvw = points @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


def fit_translation(points: np.ndarray, pixels: np.ndarray, weights: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Translation t (3,) that best places a metric pose on its 2D keypoints.

    points: (N, 3) body-relative metres; pixels: (N, 2); weights: (N,) >= 0.
    Minimises the weighted algebraic error of ``project(points + t) ≈ pixels``,
    which is linear in t: for each joint,
    ``fx·tx − (u − cx)·tz = (u − cx)·Z − fx·X`` and likewise for y.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    du = pixels[:, 0] - cx
    dv = pixels[:, 1] - cy
    zeros = np.zeros_like(du)
    A = np.concatenate([
        np.stack([np.full_like(du, fx), zeros, -du], axis=1),
        np.stack([zeros, np.full_like(dv, fy), -dv], axis=1),
    ])
    b = np.concatenate([du * points[:, 2] - fx * points[:, 0], dv * points[:, 2] - fy * points[:, 1]])
    sqrt_w = np.sqrt(np.concatenate([weights, weights]))
    t, *_ = np.linalg.lstsq(A * sqrt_w[:, None], b * sqrt_w, rcond=None)
    return t
