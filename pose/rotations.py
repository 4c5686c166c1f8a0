"""Rotations on SO(3) as small pure functions (rotation matrices, axis-angle vectors).

Shapes: a rotation is (..., 3, 3), an axis-angle ("rotation vector") is (..., 3)
whose direction is the axis and whose norm the angle in radians. All functions
broadcast over leading axes.
"""
from __future__ import annotations

import numpy as np


def skew(vectors: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices [v]x."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    zero = np.zeros_like(x)
    return np.stack([
        np.stack([zero, -z, y], axis=-1),
        np.stack([z, zero, -x], axis=-1),
        np.stack([-y, x, zero], axis=-1),
    ], axis=-2)


def exp_map(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3) (Rodrigues)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=-1)[..., None, None]
    K = skew(rotvec)
    # sin(a)/a and (1 - cos(a))/a² by their Taylor series near 0, where the ratios are 0/0.
    small = angle < 1e-4
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0 - angle**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - angle**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * K + b * (K @ K)


def log_map(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), angle in [0, π]."""
    R = np.asarray(rotations, dtype=np.float64)
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    # The antisymmetric part gives sin(a)·axis; it vanishes at a = π, handled below.
    axis_sin = 0.5 * np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                               R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    sin = np.sin(angle)[..., None]
    ratio = np.where(sin > 1e-4, angle[..., None] / np.where(sin > 1e-4, sin, 1.0), 1.0 + angle[..., None] ** 2 / 6.0)
    rotvec = axis_sin * ratio
    near_pi = angle > np.pi - 1e-3
    if np.any(near_pi):
        # sin(a)·axis vanishes at a = π; the symmetric part (R + Rᵀ)/2 = cos(a)·I + (1 − cos(a))·axis·axisᵀ
        # still gives the axis (its largest column), and sin(a)·axis its sign.
        c = cos[near_pi][..., None, None]
        symmetric = (R[near_pi] + np.swapaxes(R[near_pi], -1, -2)) / 2
        outer = (symmetric - c * np.eye(3)) / (1 - c)
        column = np.argmax(np.diagonal(outer, axis1=-2, axis2=-1), axis=-1)
        axis = outer[np.arange(len(outer)), :, column]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        sign = np.where(np.einsum("...i,...i->...", axis, axis_sin[near_pi]) < 0, -1.0, 1.0)
        rotvec[near_pi] = axis * (sign * angle[near_pi])[..., None]
    return rotvec


def relative(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The axis-angle (..., 3) that turns ``start`` into ``end``: end = start · exp(result)."""
    return log_map(np.swapaxes(start, -1, -2) @ end)


def advance(start: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    """start (..., 3, 3) · exp(rotvec (..., 3)) -> (..., 3, 3)."""
    return start @ exp_map(rotvec)


def slerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """Geodesic interpolation on SO(3): weight 0 gives ``start``, 1 gives ``end``. (..., 3, 3)."""
    return advance(start, weight * relative(start, end))


def geodesic_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in radians (...,) of the rotation between a and b (..., 3, 3)."""
    cos = (np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))
