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
bench/tracking.py measures lag and jitter for the defaults below: on vid.mp4's
runner the smoothed keypoints trail the raw ones by 1.3 frames in 2D and 0.5 in
root-relative 3D; a step of 5% of the body height lags 1.7 frames, while steps
the size of detector jitter (2%) lag 2.6, which is what removes the jitter.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pose.skeleton import hip_centre
from tracking.fields import PIXEL_FIELDS, ROTATION_FIELDS, Fields, difference, step


@dataclass(frozen=True)
class OneEuro:
    min_cutoff: float  # Hz: cutoff when still
    beta: float  # Hz per unit of speed (body heights/s, m/s or rad/s)
    d_cutoff: float = 1.0  # Hz: cutoff of the speed estimate


DEFAULT_PARAMS: dict[str, OneEuro] = {
    **{name: OneEuro(min_cutoff=1.0, beta=4.0) for name in PIXEL_FIELDS},  # body heights/s
    **{name: OneEuro(min_cutoff=1.0, beta=8.0) for name in ("keypoints_3d", "keypoints_3d_root",
                                                            "keypoints_3d_native", "translation", "vertices")},  # m/s
    **{name: OneEuro(min_cutoff=1.0, beta=2.0) for name in ROTATION_FIELDS},  # rad/s
    "betas": OneEuro(min_cutoff=0.3, beta=0.0),  # body shape does not change
}


def split_root(keypoints_3d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., J, 3) -> root (..., 1, 3) = hip centre (mean of the available joints if a hip is missing), pose − root."""
    root = hip_centre(keypoints_3d)
    missing = np.isnan(root).any(axis=-1)
    if missing.any():
        root[missing] = np.nanmean(keypoints_3d[missing[..., 0]], axis=-2)
    return root, keypoints_3d - root


def smoothing_factor(cutoff: np.ndarray | float, dt: np.ndarray | float) -> np.ndarray | float:
    """α of an exponential low-pass with this cutoff (Hz) sampled every dt seconds."""
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


def _joints(values: np.ndarray, name: str) -> np.ndarray:
    """Stacked values (N, ...) of a linear field as (N, joints, coordinates), joints being what a speed is taken over:
    a bbox is two 2-vectors (position, size), a vector (translation, betas) is one joint."""
    if name == "bbox":
        return values.reshape(len(values), 2, 2)
    return values[:, None] if values.ndim == 2 else values


def _per_row(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """(N,) -> (N, 1, ...) broadcasting against ``like`` (N, ...) row by row."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


class OneEuroFilter:
    """Filters successive Fields of one track; state lives here, one instance per track."""

    def __init__(self, params: dict[str, OneEuro] | None = None):
        self.params = DEFAULT_PARAMS if params is None else params
        self._value: Fields = {}
        self._velocity: Fields = {}

    def __call__(self, fields: Fields, dt: float) -> Fields:
        """Smoothed copy of ``fields``; fields without parameters pass through."""
        return smooth_together([self], [fields], [dt])[0]


def smooth_together(filters: Sequence[OneEuroFilter], fields: Sequence[Fields], dts: Sequence[float]) -> list[Fields]:
    """``[f(x, dt) for f, x, dt in zip(filters, fields, dts)]``, the same values computed on stacked arrays.

    A frame's tracks share field names and shapes, and linear fields with the same
    parameters and coordinates (box and 2D keypoints; 3D pose and root) differ only in
    their joints, so they are filtered together: one set of array operations per
    parameter set for the whole frame instead of ~25 small-array operations per field
    and track, which dominated the tracker's time per frame. Filters must be distinct
    (each holds one track's state).
    """
    split = _with_root_split(fields)
    out = [dict(f) for f in split]
    # (field, shape, id of the parameter table) -> rows that already have a state; the table's
    # identity stands for its contents (a tracker's filters share one) and is cheaper to hash.
    groups: dict[tuple, list[int]] = {}
    for row, (filter_, values) in enumerate(zip(filters, split)):
        params, state = filter_.params, filter_._value
        for name, value in values.items():
            if name in state:
                groups.setdefault((name, value.shape, id(params)), []).append(row)
            elif name in params:
                state[name], filter_._velocity[name] = value, np.zeros_like(difference(name, value, value))
    # Fields filtered in one step: same rows and parameters, and linear with the same coordinates.
    batches: dict[tuple, list[str]] = {}
    for (name, shape, _), rows in groups.items():
        param = filters[rows[0]].params[name]
        kind = name if name in ROTATION_FIELDS else (name in PIXEL_FIELDS, 2 if name == "bbox" else shape[-1])
        batches.setdefault((tuple(rows), param, kind), []).append(name)
    body_height = np.array([max(float(f["bbox"][3]), 1.0) for f in split])
    dt = np.asarray(dts, dtype=np.float64)
    for (rows, param, kind), names in batches.items():
        rows = list(rows)
        stacked = {name: (np.array([split[r][name] for r in rows]), np.array([filters[r]._value[name] for r in rows]),
                          np.array([filters[r]._velocity[name] for r in rows])) for name in names}
        if kind in ROTATION_FIELDS:
            value, previous, previous_velocity = stacked[kind]
            smoothed, velocity = _one_euro_step(kind, param, previous, previous_velocity, value, dt[rows], None)
            results = {kind: (smoothed, velocity)}
        else:
            value, previous, previous_velocity = (np.concatenate([_joints(stacked[n][i], n) for n in names], axis=1)
                                                  for i in range(3))
            smoothed, velocity = _one_euro_step(names[0], param, previous, previous_velocity, value, dt[rows],
                                                body_height[rows] if kind[0] else None)
            results, start = {}, 0
            for name in names:
                shape, joints = stacked[name][0].shape, _joints(stacked[name][0], name).shape[1]
                results[name] = (smoothed[:, start:start + joints].reshape(shape),
                                 velocity[:, start:start + joints].reshape(shape))
                start += joints
        for name, (smoothed, velocity) in results.items():
            for r, row_smoothed, row_velocity in zip(rows, smoothed, velocity):
                filters[r]._value[name] = out[r][name] = row_smoothed
                filters[r]._velocity[name] = row_velocity
    for values in out:
        if "keypoints_3d_root" in values:
            values["keypoints_3d"] = values["keypoints_3d"] + values.pop("keypoints_3d_root")
    return out


def _with_root_split(fields: Sequence[Fields]) -> list[Fields]:
    """Camera-frame 3D keypoints as root + root-relative pose (see the module docstring), split for all rows at once."""
    by_shape: dict[tuple, list[int]] = {}
    for i, f in enumerate(fields):
        if "keypoints_3d" in f:
            by_shape.setdefault(f["keypoints_3d"].shape, []).append(i)
    split = list(fields)
    for same in by_shape.values():
        roots, poses = split_root(np.array([fields[i]["keypoints_3d"] for i in same]))
        for i, root, pose in zip(same, roots, poses):
            split[i] = {**fields[i], "keypoints_3d": pose, "keypoints_3d_root": root}
    return split


def _one_euro_step(name: str, param: OneEuro, previous: np.ndarray, previous_velocity: np.ndarray,
                   value: np.ndarray, dt: np.ndarray, body_height: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One filter step for N tracks of fields of ``name``'s kind (``fields.difference``), previous and value
    (N, joints, coordinates) for linear fields, (N, K, 3, 3) for rotations, velocity (N, joints, coordinates),
    dt and body_height (N,) (body heights for pixel fields, else None) -> (smoothed, velocity)."""
    delta = difference(name, previous, value)
    step_dt = _per_row(dt, delta)
    velocity = previous_velocity + smoothing_factor(param.d_cutoff, step_dt) * (delta / step_dt - previous_velocity)
    speed = np.sqrt(np.einsum("...i,...i->...", velocity, velocity))[..., None]
    if body_height is not None:
        speed = speed / _per_row(body_height, speed)
    alpha = smoothing_factor(param.min_cutoff + param.beta * speed, _per_row(dt, speed))
    smoothed = step(name, previous, alpha * delta)
    # A joint that was missing (NaN) restarts from its observation instead of staying NaN.
    smoothed = np.where(np.isnan(smoothed), value, smoothed)
    velocity[np.isnan(velocity)] = 0.0
    return smoothed, velocity
