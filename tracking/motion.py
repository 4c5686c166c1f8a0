"""Motion models: where a track's fields are expected at a later frame.

A model answers ``predict(observations, index)`` from the track's recent
observations ``[(frame index, Fields), ...]`` (increasing, last = latest) and
says in ``history`` how many of them it needs. The tracker uses the same
prediction to associate (where to look for the person) and to publish
``predicted`` frames.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from tracking.fields import Fields, difference, step

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
    """Constant velocity with a geometric decay, so a prediction settles instead of flying off.

    The velocity is the change between the latest observation and the oldest one
    at most ``span`` frames before it (a longer base than one frame halves the
    noise of one-frame differences). After n missed frames the offset is
    ``v · (decay + decay² + … + decayⁿ)``, which tends to ``v · decay / (1 − decay)``:
    a body keeps moving briefly, then the prediction holds.
    """

    def __init__(self, decay: float = 0.9, span: int = 3):
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
        for name in last.keys() & earlier.keys():
            # A joint missing at either end has no velocity: it holds.
            predicted[name] = step(name, last[name], travelled * np.nan_to_num(difference(name, earlier[name], last[name])))
        return predicted
