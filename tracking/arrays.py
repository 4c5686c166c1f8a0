"""Reductions the tracker runs per track and frame over short axes (a point's 2-3
coordinates, a pose's joints), written so numpy does not take its slow path: its own
sum or norm over an axis that short costs several times more here.
"""
from __future__ import annotations

import numpy as np


def norm(vectors: np.ndarray) -> np.ndarray:
    """(..., C) -> (...,) Euclidean norms, as ``np.linalg.norm(axis=-1)``, summed coordinate by coordinate."""
    squares = vectors * vectors
    return np.sqrt(sum((squares[..., i] for i in range(1, vectors.shape[-1])), squares[..., 0]))


def nan_mean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` (removed) of the non-NaN entries; NaN where there are none."""
    x = np.moveaxis(x, axis, -1)
    present = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _sum_last(np.where(present, x, 0.0)) / _sum_last(present)


def _sum_last(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis as one matrix-vector product."""
    return (x.reshape(-1, x.shape[-1]) @ np.ones(x.shape[-1])).reshape(x.shape[:-1])
