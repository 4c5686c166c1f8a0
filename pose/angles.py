"""Joint angles in degrees, measured on 3D keypoints.

Each angle is the angle at a vertex joint between the two bones that meet
there: ``angle = acos(u·v / |u||v|)`` with ``u = a − vertex``, ``v = b − vertex``.
180° is a straight limb (knee, elbow, spine), 0° a fully folded one.
"""
from __future__ import annotations

import numpy as np

from pose.skeleton import JOINT_INDEX

# key: (a, vertex, b), all canonical joint names.
ANGLE_DEFINITIONS: dict[str, tuple[str, str, str]] = {
    "leftKnee": ("left_hip", "left_knee", "left_ankle"),
    "rightKnee": ("right_hip", "right_knee", "right_ankle"),
    # Trunk–thigh angle: 180° standing straight, smaller when flexed.
    "leftHip": ("left_shoulder", "left_hip", "left_knee"),
    "rightHip": ("right_shoulder", "right_hip", "right_knee"),
    "leftElbow": ("left_shoulder", "left_elbow", "left_wrist"),
    "rightElbow": ("right_shoulder", "right_elbow", "right_wrist"),
    # Trunk–upper-arm angle: 0° arm hanging along the trunk, 180° raised overhead.
    "leftShoulder": ("left_hip", "left_shoulder", "left_elbow"),
    "rightShoulder": ("right_hip", "right_shoulder", "right_elbow"),
    # Bend of the back at the spine joint: 180° straight.
    "spine": ("pelvis", "spine", "neck"),
}
ANGLE_KEYS: tuple[str, ...] = tuple(ANGLE_DEFINITIONS)
_TRIPLES = np.array([[JOINT_INDEX[n] for n in triple] for triple in ANGLE_DEFINITIONS.values()])


def angle_at(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle at ``vertex`` between ``a`` and ``b``.

    a, vertex, b: (..., 3). Returns (...,) degrees; NaN where a bone has no length
    or a point is missing.
    """
    u = a - vertex
    v = b - vertex
    norms = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.einsum("...i,...i->...", u, v) / norms
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def joint_angles_array(keypoints_3d: np.ndarray) -> np.ndarray:
    """(..., J, 3) canonical keypoints -> (..., len(ANGLE_KEYS)) degrees, NaN if unmeasurable."""
    points = keypoints_3d[..., _TRIPLES, :]  # (..., A, 3, 3)
    return angle_at(points[..., 0, :], points[..., 1, :], points[..., 2, :])


def joint_angles(keypoints_3d: np.ndarray) -> dict[str, float | None]:
    """(J, 3) canonical keypoints -> {angle key: degrees or None}."""
    values = joint_angles_array(keypoints_3d)
    return {key: (None if np.isnan(v) else round(float(v), 3)) for key, v in zip(ANGLE_KEYS, values)}
