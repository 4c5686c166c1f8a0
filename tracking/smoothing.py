"""One Euro filter (Casiez et al., CHI 2012) over every moving field of a track.

A first-order low-pass whose cutoff rises with speed: still poses lose their
jitter, fast motion passes with little lag. Per field and per joint:

    velocity ← low-pass(d_cutoff)(Δx / dt)
    cutoff    = min_cutoff + beta · |velocity|
    x̂        ← x̂ + α(cutoff) · (x − x̂),   α(f) = 1 / (1 + 1 / (2π f dt))

Speeds are taken per joint (norm over the coordinates), so a joint is smoothed
the same whichever direction it moves. Camera-frame 3D keypoints are filtered
as body root (hip centre) + root-relative pose: the depth of a fitted
translation is noisy, and filtering joints separately would let that noise
set a different cutoff per joint and distort the pose (and joint angles). Pixel fields are measured in body
heights (box height) so the same parameters suit any resolution and distance;
rotations are filtered on SO(3) (``fields.difference`` / ``fields.step``).
bench/tracking.py measures lag and jitter for the defaults below.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose.skeleton import JOINT_INDEX
from tracking.fields import ROTATION_FIELDS, Fields, difference, step


@dataclass(frozen=True)
class OneEuro:
    min_cutoff: float  # Hz: cutoff when still
    beta: float  # Hz per unit of speed (body heights/s, m/s or rad/s)
    d_cutoff: float = 1.0  # Hz: cutoff of the speed estimate


PIXEL_FIELDS = ("bbox", "keypoints_2d")
DEFAULT_PARAMS: dict[str, OneEuro] = {
    **{name: OneEuro(min_cutoff=1.0, beta=4.0) for name in PIXEL_FIELDS},  # body heights/s
    **{name: OneEuro(min_cutoff=1.0, beta=8.0) for name in ("keypoints_3d", "keypoints_3d_root",
                                                            "keypoints_3d_native", "translation", "vertices")},  # m/s
    **{name: OneEuro(min_cutoff=1.0, beta=2.0) for name in ROTATION_FIELDS},  # rad/s
    "betas": OneEuro(min_cutoff=0.3, beta=0.0),  # body shape does not change
}
_HIPS = [JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]]


def split_root(keypoints_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(J, 3) -> root (1, 3) = hip centre (mean of the available joints if a hip is missing), pose (J, 3) − root."""
    root = keypoints_3d[_HIPS].mean(axis=0, keepdims=True)
    if np.isnan(root).any():
        root = np.nanmean(keypoints_3d, axis=0, keepdims=True)
    return root, keypoints_3d - root


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """α of an exponential low-pass with this cutoff (Hz) sampled every dt seconds."""
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


def _per_joint(values: np.ndarray, name: str) -> np.ndarray:
    """View a field as (..., coordinates) so speeds are per joint: a bbox is two 2-vectors (position, size)."""
    return values.reshape(2, 2) if name == "bbox" else values


class OneEuroFilter:
    """Filters successive Fields of one track; state lives here, one instance per track."""

    def __init__(self, params: dict[str, OneEuro] | None = None):
        self.params = DEFAULT_PARAMS if params is None else params
        self._value: Fields = {}
        self._velocity: Fields = {}

    def __call__(self, fields: Fields, dt: float) -> Fields:
        """Smoothed copy of ``fields``; fields without parameters pass through."""
        if "keypoints_3d" not in fields:
            return self._filter(fields, dt)
        root, pose = split_root(fields["keypoints_3d"])
        out = self._filter({**fields, "keypoints_3d": pose, "keypoints_3d_root": root}, dt)
        out["keypoints_3d"] = out["keypoints_3d"] + out.pop("keypoints_3d_root")
        return out

    def _filter(self, fields: Fields, dt: float) -> Fields:
        body_height = max(float(fields["bbox"][3]), 1.0)
        out = dict(fields)
        for name, value in fields.items():
            param = self.params.get(name)
            if param is None:
                continue
            if name not in self._value:
                self._value[name], self._velocity[name] = value, np.zeros_like(difference(name, value, value))
                continue
            delta = difference(name, self._value[name], value)
            velocity = self._velocity[name] + smoothing_factor(param.d_cutoff, dt) * (delta / dt - self._velocity[name])
            per_joint = _per_joint(velocity, name)
            speed = np.sqrt(np.einsum("...i,...i->...", per_joint, per_joint))[..., None]
            if name in PIXEL_FIELDS:
                speed = speed / body_height
            alpha = smoothing_factor(param.min_cutoff + param.beta * speed, dt)
            smoothed = step(name, self._value[name], (alpha * _per_joint(delta, name)).reshape(delta.shape))
            # A joint that was missing (NaN) restarts from its observation instead of staying NaN.
            smoothed = np.where(np.isnan(smoothed), value, smoothed)
            velocity[np.isnan(velocity)] = 0.0
            self._value[name], self._velocity[name] = smoothed, velocity
            out[name] = smoothed
        return out
