"""Motion models: where a track's fields are expected at a later frame.

A model answers ``predict(observations, index)`` from the track's recent
observations ``[(frame index, Fields), ...]`` (increasing, last = latest) and
says in ``history`` how many of them it needs. The tracker uses the same
prediction to associate (where to look for the person) and to publish
``predicted`` frames.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tracking.fields import ROTATION_FIELDS, Fields

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
    """The body moves on at constant velocity, with a geometric decay; its pose holds.

    Only the whole body moves: per-joint velocities of swinging limbs point the
    wrong way within a stride (bench/tracking.py measured per-joint
    extrapolation worse than holding), so keypoint-like fields (J, C) shift by
    their mean displacement, boxes move per coordinate, and rotations and
    shape hold. The velocity is the change between the latest observation and
    the oldest one at most ``span`` frames before it (a longer base halves the
    noise of one-frame differences). After n missed frames the offset is
    ``v · (decay + decay² + … + decayⁿ)``, which tends to ``v · decay / (1 − decay)``:
    a body keeps moving briefly, then the prediction holds.
    """

    def __init__(self, decay: float = 0.8, span: int = 8):
        self.decay = decay
        self.span = span
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
        for name in (last.keys() & earlier.keys()) - HELD_FIELDS:
            predicted[name] = last[name] + travelled * body_displacement(earlier[name], last[name])
        return predicted


HELD_FIELDS = {*ROTATION_FIELDS, "betas"}


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
