"""Pinhole camera maths (OpenCV axes: x right, y down, z forward, metres).

Intrinsics follow HMR 2.0's full-image convention for every detector, so
that all detectors report the same camera: principal point at the image centre,
focal ``f = crop focal / crop size · max(W, H)`` pixels (``5000 / 256 · max(W, H)``
for the released checkpoint), or, for a user who knows their camera, the focal of
its field of view across the longer side (``--fov``).
"""
from __future__ import annotations

import math

import numpy as np

HMR2_FOCAL = 5000.0  # the released checkpoint's EXTRA.FOCAL_LENGTH, pixels for its crop
HMR2_CROP = 256


def default_focal(width: int, height: int, crop_focal: float = HMR2_FOCAL, crop_size: int = HMR2_CROP) -> float:
    """Focal length in pixels for a W×H image: HMR 2.0's crop focal, the crop stretched over the longer side."""
    return crop_focal / crop_size * max(width, height)


def focal_from_fov(fov_degrees: float, width: int, height: int) -> float:
    """Focal length in pixels of a camera whose field of view across the image's longer side is ``fov_degrees``."""
    if not 0 < fov_degrees < 180:
        raise ValueError(f"field of view must be between 0 and 180 degrees, not {fov_degrees}")
    return max(width, height) / 2 / math.tan(math.radians(fov_degrees) / 2)


def image_focal(width: int, height: int, fov_degrees: float | None = None, crop_focal: float = HMR2_FOCAL,
                crop_size: int = HMR2_CROP) -> float:
    """The one focal rule: the field of view's focal when the user gave one, else ``default_focal``."""
    if fov_degrees is not None:
        return focal_from_fov(fov_degrees, width, height)
    return default_focal(width, height, crop_focal, crop_size)


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


def cam_crop_to_full(cam_crop: np.ndarray, box_center: np.ndarray, box_size: np.ndarray,
                     img_size: np.ndarray, focal_length: float | np.ndarray = HMR2_FOCAL) -> np.ndarray:
    """HMR 2.0's weak-perspective crop camera -> translation in the full image's camera.

    cam_crop: (N, 3) [s, tx, ty] for a square crop; box_center: (N, 2) pixels; box_size: (N,)
    crop side in pixels; img_size: (N, 2) [W, H]; focal_length: full-image focal in pixels,
    scalar or (N,). Returns (N, 3) [tx, ty, tz] metres, principal point at the image centre.
    The crop spans s·box_size/2 pixels per unit at depth tz = 2f / (s·box_size); the box
    centre's offset from the image centre becomes a lateral shift at that depth.
    """
    scaled_size = box_size * cam_crop[:, 0] + 1e-9
    tz = 2 * focal_length / scaled_size
    tx = 2 * (box_center[:, 0] - img_size[:, 0] / 2.0) / scaled_size + cam_crop[:, 1]
    ty = 2 * (box_center[:, 1] - img_size[:, 1] / 2.0) / scaled_size + cam_crop[:, 2]
    return np.stack([tx, ty, tz], axis=-1)
