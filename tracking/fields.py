"""A Detection seen as named arrays that move, so one piece of code can
interpolate, extrapolate and smooth every quantity a detector reports.

Each field has a kind that says how to take the difference of two values and
how to step a value by a difference:
- ``linear``: boxes, keypoints, translation, betas, vertices — b − a, a + d;
- ``rotation``: SMPL rotation matrices (..., 3, 3) — differences are axis-angle
  vectors (..., 3) on SO(3), so interpolation is slerp, never a matrix lerp.
Keypoint confidences and everything else in ``extras`` (appearance, focal
length, ...) do not move: they are copied from the nearest observation.
"""
from __future__ import annotations

import numpy as np

from pose import rotations
from pose.detection import Detection

Fields = dict[str, np.ndarray]

ROTATION_FIELDS = ("global_orient", "body_pose")
PIXEL_FIELDS = ("bbox", "keypoints_2d")  # measured in image pixels
# What a track remembers of observations older than its working window: enough for a
# motion model to recognise a pose and replay the limbs' motion (motion.MotionMatching).
RECALLED_FIELDS = ("bbox", "keypoints_2d", "keypoints_3d")
# field name -> (extras key, key inside it) for values stored in extras.
_EXTRAS_FIELDS = {
    "translation": ("camera", "translation"),
    "global_orient": ("smpl", "global_orient"),
    "body_pose": ("smpl", "body_pose"),
    "betas": ("smpl", "betas"),
    "vertices": ("vertices", None),
    "keypoints_3d_native": ("keypoints_3d_native", None),
}


def to_fields(d: Detection) -> Fields:
    """The moving values of a detection, float64, keyed by field name."""
    fields = {"bbox": d.bbox, "keypoints_2d": d.keypoints_2d[:, :2]}
    if d.keypoints_3d is not None:
        fields["keypoints_3d"] = d.keypoints_3d
    for name, (key, inner) in _EXTRAS_FIELDS.items():
        value = d.extras.get(key)
        if value is not None and inner is not None:
            value = value.get(inner) if isinstance(value, dict) else None
        if value is not None:
            fields[name] = value
    return {name: np.asarray(value, dtype=np.float64) for name, value in fields.items()}


def from_fields(template: Detection, fields: Fields) -> Detection:
    """A copy of ``template`` with the values in ``fields`` (float32); what ``fields`` lacks is the template's."""
    keypoints_2d = template.keypoints_2d
    if "keypoints_2d" in fields:
        keypoints_2d = keypoints_2d.copy()
        keypoints_2d[:, :2] = fields["keypoints_2d"]
    extras = dict(template.extras)
    for name, (key, inner) in _EXTRAS_FIELDS.items():
        if name in fields:
            value = fields[name].astype(np.float32)
            extras[key] = value if inner is None else {**extras[key], inner: value}
    bbox = fields["bbox"].astype(np.float32) if "bbox" in fields else template.bbox
    keypoints_3d = fields["keypoints_3d"].astype(np.float32) if "keypoints_3d" in fields else template.keypoints_3d
    # The constructor, not dataclasses.replace: this runs twice per track and frame, and replace() is 3× slower.
    return Detection(bbox, template.score, keypoints_2d, keypoints_3d, extras)


def difference(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What turns a into b: b − a, or the axis-angle (..., 3) from a to b for rotations."""
    return rotations.relative(a, b) if name in ROTATION_FIELDS else b - a


def step(name: str, a: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """a moved by delta (the inverse of ``difference``)."""
    return rotations.advance(a, delta) if name in ROTATION_FIELDS else a + delta


def blend(a: Fields, b: Fields, weight: float) -> Fields:
    """Fields a fraction ``weight`` of the way from a to b (lerp, slerp for rotations).

    Only fields both sides have are blended; ``from_fields``' template supplies the others.
    """
    return {name: step(name, a[name], weight * difference(name, a[name], b[name])) for name in a.keys() & b.keys()}
