"""Joint sets and the canonical skeleton every detector maps into.

A backend reads keypoints by name. Each detector has its own native joint
order; ``to_canonical`` maps it into ``CANONICAL_JOINTS`` so the published
arrays mean the same thing whichever model ran. A canonical joint a model does
not have is NaN with confidence 0, never guessed.
"""
from __future__ import annotations

import numpy as np

# COCO-17 in COCO order, then the joints backends use beyond COCO.
CANONICAL_JOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
    "pelvis", "neck", "spine", "head_top",
    "left_heel", "right_heel", "left_big_toe", "right_big_toe",
)
JOINT_INDEX = {name: i for i, name in enumerate(CANONICAL_JOINTS)}

# Bones for drawing a skeleton (pairs of canonical names).
BONES: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_ankle", "left_heel"), ("right_ankle", "right_heel"),
    ("left_ankle", "left_big_toe"), ("right_ankle", "right_big_toe"),
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
)

# MediaPipe BlazePose, 33 landmarks.
BLAZEPOSE_JOINTS: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer",
    "right_eye_inner", "right_eye", "right_eye_outer", "left_ear", "right_ear",
    "mouth_left", "mouth_right", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

# HMR 2.0's 44 keypoints: OpenPose BODY_25, then the 19 J19 regressor joints.
HMR2_JOINTS: tuple[str, ...] = (
    "op_nose", "op_neck", "op_right_shoulder", "op_right_elbow", "op_right_wrist",
    "op_left_shoulder", "op_left_elbow", "op_left_wrist", "op_mid_hip",
    "op_right_hip", "op_right_knee", "op_right_ankle",
    "op_left_hip", "op_left_knee", "op_left_ankle",
    "op_right_eye", "op_left_eye", "op_right_ear", "op_left_ear",
    "op_left_big_toe", "op_left_small_toe", "op_left_heel",
    "op_right_big_toe", "op_right_small_toe", "op_right_heel",
    "j19_right_ankle", "j19_right_knee", "j19_right_hip", "j19_left_hip",
    "j19_left_knee", "j19_left_ankle", "j19_right_wrist", "j19_right_elbow",
    "j19_right_shoulder", "j19_left_shoulder", "j19_left_elbow", "j19_left_wrist",
    "j19_neck_lsp", "j19_head_top_lsp", "j19_pelvis_mpii", "j19_thorax_mpii",
    "j19_spine_h36m", "j19_jaw_h36m", "j19_head_h36m",
)


def _mapping(native: tuple[str, ...], sources: dict[str, tuple[str, ...]]) -> tuple[tuple[int, ...], ...]:
    """For each canonical joint, the native indices whose mean it is (empty: absent)."""
    return tuple(tuple(native.index(s) for s in sources.get(name, ())) for name in CANONICAL_JOINTS)


BLAZEPOSE_TO_CANONICAL = _mapping(
    BLAZEPOSE_JOINTS,
    {
        **{name: (name,) for name in CANONICAL_JOINTS[:17]},
        "pelvis": ("left_hip", "right_hip"),
        "neck": ("left_shoulder", "right_shoulder"),
        "left_heel": ("left_heel",), "right_heel": ("right_heel",),
        "left_big_toe": ("left_foot_index",), "right_big_toe": ("right_foot_index",),
    },
)

HMR2_TO_CANONICAL = _mapping(
    HMR2_JOINTS,
    {
        **{name: ("op_" + name,) for name in CANONICAL_JOINTS[:17]},
        "pelvis": ("op_mid_hip",),
        "neck": ("op_neck",),
        "spine": ("j19_spine_h36m",),
        "head_top": ("j19_head_top_lsp",),
        "left_heel": ("op_left_heel",), "right_heel": ("op_right_heel",),
        "left_big_toe": ("op_left_big_toe",), "right_big_toe": ("op_right_big_toe",),
    },
)


def to_canonical(points: np.ndarray, mapping: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Map native joints into the canonical order.

    points: (N_native, D) float. Returns (J, D) float32 with J = len(CANONICAL_JOINTS);
    rows of joints the model lacks are NaN.
    """
    out = np.full((len(mapping), points.shape[1]), np.nan, dtype=np.float32)
    for row, sources in enumerate(mapping):
        if sources:
            out[row] = points[list(sources)].mean(axis=0)
    return out


def available(points: np.ndarray) -> np.ndarray:
    """(J, D) -> (J,) bool: which joints carry numbers."""
    return ~np.isnan(points).any(axis=-1)


def hip_centre(points: np.ndarray) -> np.ndarray:
    """(..., J, C) -> (..., 1, C): the midpoint of the two hips, NaN where either is missing.

    (left + right) / 2 rather than a mean over the pair: numpy's reduction over an axis
    of two costs ~3× more, and the tracker takes this for every person on every frame.
    """
    left, right = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
    return (points[..., left:left + 1, :] + points[..., right:right + 1, :]) / 2
