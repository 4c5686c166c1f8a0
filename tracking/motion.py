"""Motion models: where a track's fields are expected at a later frame.

A model answers ``predict(observations, index)`` from the track's observations
``[(frame index, Fields), ...]`` (increasing, last = latest). It says in
``history`` how many of the latest it needs with every field, and in ``recall``
how many older ones it can use with ``RECALLED_FIELDS`` only (what the tracker
keeps of old observations). The tracker uses the same prediction to associate
(where to look for the person; given ``history`` observations of the box only)
and to publish ``predicted`` frames. Its default is ``MotionMatching()``: the
body moves on at constant velocity (``ConstantVelocity``) and the limbs replay
what they did the last time the body was in this pose (measurements in the
docstrings).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tracking.arrays import nan_mean, norm
from tracking.fields import PIXEL_FIELDS, ROTATION_FIELDS, Fields

Observations = Sequence[tuple[int, Fields]]


class MotionModel(Protocol):
    history: int  # latest observations predict() needs with every field
    recall: int  # older observations it can use, with RECALLED_FIELDS only

    def predict(self, observations: Observations, index: int) -> Fields: ...


class Hold:
    """The last observation, unchanged: what PHALP publishes for a missed frame."""

    history = 1
    recall = 0

    def predict(self, observations: Observations, index: int) -> Fields:
        return observations[-1][1]


class ConstantVelocity:
    """The body moves on in the image at constant velocity, with a geometric decay; the rest holds.

    Only the whole body moves: per-joint velocities of swinging limbs point the
    wrong way within a stride (bench/tracking.py measured per-joint
    extrapolation worse than holding), so keypoint-like fields (J, C) shift by
    their mean displacement and a box moves its centre and keeps its size. A
    pose-derived box changes width as limbs swing and while a detector settles;
    extrapolating the size shrank the runner's box on vid.mp4 from 205 to 83 px
    wide over a 12-frame gap, and the re-detection became a new track. Moving
    the centre only also cut ID switches and fragmentations on bench.scenes'
    clutter scenes without appearance vectors (seeds 5-24, not the bench's:
    17 → 14 and 16 → 12; the other families within ±2). Only the fields in
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
        self.recall = 0

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


# (dx, dy, dw, dh) @ this = (dx + dw/2, dy + dh/2, 0, 0): a box's centre moves, its size stays.
_CENTRE_MOTION = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0]], dtype=np.float64)


def body_displacement(earlier: np.ndarray, last: np.ndarray) -> np.ndarray:
    """How the body moved: a box's (x, y, w, h) centre, size kept (4,); the mean over joints (1, C) of points (J, C).

    Joints missing at either end do not count; none in common gives no motion.
    """
    change = last - earlier
    if change.ndim == 1:
        change[np.isnan(change)] = 0.0
        return change @ _CENTRE_MOTION
    common = ~np.isnan(change).any(axis=-1)
    return change[common].mean(axis=0, keepdims=True) if common.any() else np.zeros((1, change.shape[-1]))


class MotionMatching:
    """Limbs repeat themselves: replay what they did after the last time the body was in this pose.

    Running, walking, pedalling and linked turns are cycles. Over a gap a
    body-motion model (``base``) cannot say where a swinging limb goes, and
    per-joint extrapolation is worse than holding (``ConstantVelocity``); but a
    track has usually been through this phase of the cycle before. Among the
    track's last ``recall`` observations the model finds the frame j whose poses,
    over ``window`` frames, look most like the latest ones, and adds to the base
    prediction the change of pose that followed j:

        keypoints(last + n) = base(last + n) + shape(j + n) − shape(j)

    where shape = keypoints minus their mean over joints (2D: rescaled from frame
    j's box height to the latest's; 3D: metres as they are). Poses are compared
    as 2D shapes in box heights (mean joint distance). j must be within
    ``max_distance`` of the latest poses, and the pose must have gone farther
    than that in between (a return, not a pose that is still about the same);
    otherwise (the first cycle, motion that does not repeat) the base
    prediction stands. Only keypoints replay: box, SMPL rotations, shape and mesh
    are the base model's.

    bench.tracking, causal prediction over 32 withholding seeds (35% of frames
    in bursts of 1-15), 2D / root-relative 3D error on withheld frames:
    - BlazePose on vid.mp4 (a runner, one stride every 74 frames): 20.2 px /
      60.6 mm against 24.3 px / 71.1 mm for ``ConstantVelocity()`` alone and
      25.1 px / 71.1 mm for holding; 2D below holding on every seed, 3D on 30;
    - synthetic walkers (a 25-frame stride, no parameter chosen on them):
      12.2 px against 12.8 and 17.1.
    ``max_distance`` 0.04 was chosen on vid.mp4: 0.03 and 0.05 give the same
    2D error; 0.07 and 0.1 accept looser matches and are below holding on only
    25 of 32 seeds. ``recall`` must cover a cycle plus the gap.
    """

    def __init__(self, base: MotionModel | None = None, recall: int = 150, window: int = 3,
                 max_distance: float = 0.04):
        self.base = base if base is not None else ConstantVelocity()
        self.history = self.base.history
        self.recall = recall
        self.window = window
        self.max_distance = max_distance
        # latest observation's id -> (that observation, its PoseTrail): a gap predicts each of
        # its frames from the same observations, so the search is built once per gap.
        self._trails: dict[int, tuple[Fields, PoseTrail]] = {}

    def predict(self, observations: Observations, index: int) -> Fields:
        last_index, last = observations[-1]
        if "keypoints_2d" not in last or "bbox" not in last:
            return self.base.predict(observations, index)  # association asks for the box alone
        predicted = self.base.predict(observations[-self.history:], index)
        trail = self._trail(observations)
        ahead = index - last_index
        j = trail.best_match(ahead, self.max_distance)
        if j is None:
            return predicted
        predicted = dict(predicted)
        for name, change in trail.changes(j, ahead).items():
            predicted[name] = predicted[name] + change
        return predicted

    def _trail(self, observations: Observations) -> PoseTrail:
        last = observations[-1][1]
        cached = self._trails.get(id(last))
        if cached is not None and cached[0] is last:  # the reference held keeps the id from being reused
            return cached[1]
        trail = PoseTrail(observations, self.window)
        self._trails[id(last)] = (last, trail)
        if len(self._trails) > _CACHED_TRAILS:
            del self._trails[next(iter(self._trails))]
        return trail


_CACHED_TRAILS = 32  # tracks in a gap at once before the oldest trail is rebuilt


class PoseTrail:
    """A track's poses on every frame from its oldest kept observation to its latest: what MotionMatching searches.

    ``heights`` (L,) box heights, ``shapes`` (L, J, 2) 2D body shapes in pixels,
    ``shapes_3d`` (L, J, 3) or None, NaN on frames without an observation;
    ``unlikeness`` (L,) the ``trail_distance`` of the 2D shapes in box heights.
    """

    def __init__(self, observations: Observations, window: int):
        self.heights = frame_trail(observations, "bbox")[:, 3]
        self.heights[self.heights <= 0] = np.nan  # a degenerate box has no scale to compare poses at
        self.shapes = body_shape(frame_trail(observations, "keypoints_2d"))
        self.shapes_3d = (body_shape(frame_trail(observations, "keypoints_3d"))
                          if "keypoints_3d" in observations[-1][1] else None)
        self.unlikeness = trail_distance(self.shapes / self.heights[:, None, None], window)

    def best_match(self, ahead: int, max_distance: float) -> int | None:
        """The frame j most like the latest, within ``max_distance``, that is a recurrence with a continuation.

        A recurrence: the pose went away (a frame after j is farther than
        ``max_distance``) and came back; a pose that is merely still about the same
        would replay as per-joint extrapolation. A continuation: the pose ``ahead``
        frames after j was observed, before the latest frame.
        """
        candidates = len(self.heights) - 1 - ahead
        if candidates <= 0:
            return None
        observed = ~np.isnan(self.heights)
        farthest_from_j_on = np.fmax.accumulate(np.nan_to_num(self.unlikeness)[::-1])[::-1]  # (L,)
        went_away = farthest_from_j_on[1:candidates + 1] > max_distance
        valid = observed[:candidates] & observed[ahead:ahead + candidates] & went_away
        unlikeness = np.where(valid, self.unlikeness[:candidates], np.nan)
        if np.isnan(unlikeness).all():
            return None
        j = int(np.nanargmin(unlikeness))
        return j if unlikeness[j] <= max_distance else None

    def changes(self, j: int, ahead: int) -> Fields:
        """The keypoints' change of shape from frame j to j + ``ahead``: 2D rescaled to the latest box, 3D as is."""
        changes = {"keypoints_2d": (self.shapes[j + ahead] - self.shapes[j]) * (self.heights[-1] / self.heights[j])}
        if self.shapes_3d is not None:
            changes["keypoints_3d"] = self.shapes_3d[j + ahead] - self.shapes_3d[j]
        return {name: np.nan_to_num(change) for name, change in changes.items()}


def frame_trail(observations: Observations, name: str) -> np.ndarray:
    """(L, ...) ``name`` on every frame from the first observation to the last (L frames); NaN where unobserved."""
    first_index = observations[0][0]
    seen = [(i - first_index, fields[name]) for i, fields in observations if name in fields]
    trail = np.full((observations[-1][0] - first_index + 1, *seen[-1][1].shape), np.nan)
    trail[[offset for offset, _ in seen]] = np.stack([value for _, value in seen])
    return trail


def body_shape(points: np.ndarray) -> np.ndarray:
    """(..., J, C) keypoints -> the same minus their mean over joints: the pose without where the body is."""
    return points - nan_mean(points, axis=-2)[..., None, :]


def trail_distance(shapes: np.ndarray, window: int) -> np.ndarray:
    """(L, J, C) -> (L,) how unlike the latest ``window`` poses the poses ending at each frame j are.

    Mean over q < window of the mean joint distance between ``shapes[j − q]`` and
    ``shapes[L − 1 − q]``, over the q where both frames were observed and over
    the joints both have; NaN when fewer than half the window compare.
    """
    joints, dims = shapes.shape[1:]
    padded = np.concatenate([np.full((window - 1, joints, dims), np.nan), shapes])
    # (L, J, C, window): [j, ..., k] = shapes[j − window + 1 + k]
    ending_at = sliding_window_view(padded, window, axis=0)
    joint_distance = norm(np.moveaxis(ending_at - ending_at[-1], 2, -1))  # (L, J, window)
    per_frame = nan_mean(joint_distance, axis=1)  # (L, window)
    compared = (~np.isnan(per_frame)).sum(axis=1)
    return np.where(2 * compared >= window, nan_mean(per_frame, axis=1), np.nan)
