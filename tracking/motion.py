"""Motion models: where a track's fields are expected at a later frame.

A model answers ``predict(observations, index)`` from the track's recent
observations ``[(frame index, Fields), ...]`` (increasing, last = latest) and
says in ``history`` how many of them it needs. The tracker uses the same
prediction to associate (where to look for the person) and to publish
``predicted`` frames; its default is ``ConstantVelocity()``, which moves the
body in the image and holds the rest (measurements in its docstring).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tracking.fields import PIXEL_FIELDS, ROTATION_FIELDS, Fields

Observations = Sequence[tuple[int, Fields]]


class MotionModel(Protocol):
    history: int

    def predict(self, observations: Observations, index: int) -> Fields: ...


class Hold:
    """The last observation, unchanged: what PHALP publishes for a missed frame."""

    history = 1

    def predict(self, observations: Observations, index: int) -> Fields:
        return observations[-1][1]


class ConstantVelocity:
    """The body moves on in the image at constant velocity, with a geometric decay; the rest holds.

    Only the whole body moves: per-joint velocities of swinging limbs point the
    wrong way within a stride (bench/tracking.py measured per-joint
    extrapolation worse than holding), so keypoint-like fields (J, C) shift by
    their mean displacement and boxes move per coordinate. Only the fields in
    ``moving`` move, by default the image-plane ones (box, 2D keypoints): 3D
    keypoints and translations carry the detector's depth noise, and moving them
    too made the 3D error worse than holding on bench.tracking's gap filling for
    no 2D gain. Rotations and shape hold.

    The velocity is the change between the latest observation and the oldest one
    at most ``span`` frames before it. After n missed frames the offset is
    ``v · (decay + decay² + … + decayⁿ)``, which tends to ``v · decay / (1 − decay)``:
    a body keeps moving briefly, then the prediction holds. Span 4 and decay 0.8
    put the 2D prediction of BlazePose on vid.mp4 below holding on 27 of 32
    withholding seeds (span 8: fewer, and a smaller mean gain; bench/RESULTS.md)
    with the same ID switches on bench.scenes. On the rest, the runner bobs or
    BlazePose is still settling on a track's first frames, and holding wins.
    """

    def __init__(self, decay: float = 0.8, span: int = 4, moving: tuple[str, ...] = PIXEL_FIELDS):
        self.decay = decay
        self.span = span
        if set(moving) & set(ROTATION_FIELDS):
            raise ValueError("rotations do not move linearly; leave them out of `moving`")
        self.moving = set(moving)
        self.history = span + 1

    def travelled(self, frames: int) -> float:
        """Velocity multiples covered after ``frames`` predicted frames: Σ_{k=1..frames} decayᵏ."""
        if self.decay == 1.0:
            return float(frames)
        return self.decay * (1.0 - self.decay**frames) / (1.0 - self.decay)

    def predict(self, observations: Observations, index: int) -> Fields:
        last_index, last = observations[-1]
        base = [(i, f) for i, f in observations[:-1] if last_index - i <= self.span]
        if not base:
            return last
        base_index, earlier = base[0]
        travelled = self.travelled(index - last_index) / (last_index - base_index)
        predicted = dict(last)
        for name in last.keys() & earlier.keys() & self.moving:
            predicted[name] = last[name] + travelled * body_displacement(earlier[name], last[name])
        return predicted


def body_displacement(earlier: np.ndarray, last: np.ndarray) -> np.ndarray:
    """How the body moved: per coordinate for a box (4,), the mean over joints (1, C) for points (J, C).

    Joints missing at either end do not count; none in common gives no motion.
    """
    change = last - earlier
    if change.ndim == 1:
        change[np.isnan(change)] = 0.0
        return change
    common = ~np.isnan(change).any(axis=-1)
    return change[common].mean(axis=0, keepdims=True) if common.any() else np.zeros((1, change.shape[-1]))
