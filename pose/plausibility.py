"""Is a detected pose a plausible person? A check on its canonical keypoints alone, for any detector.

Pose models put a skeleton on whatever they are shown: a black inflatable tube, a
railing, the upper half of a person cut by a tile's edge. What such poses share is a
body that a person does not have: core joints (shoulders, hips) the model itself
doubts, limbs that shrink to stubs next to the torso, a torso that fills the whole
body, a body many times wider across than long along its torso. ``implausible`` names each such sign.

One sign alone is common on real riders (a tucked body in the air has a long torso
for its extent; a board-grab hides a hip), so the soft signs reject a pose only
in pairs; the hard ones (core joints all but invisible, an extent no body has) alone.
The thresholds come from ~1,200 BlazePose poses on the snow clips' riders (full frames,
crops, tiles) against the poses put on objects there (bench/results/recall.md). Some
object poses pass (a railing seen as a person lying down): ``detectors.second_look``
also asks a pose found in tiles to be found again in a closer view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose.skeleton import JOINT_INDEX


def _pairs(*names: tuple[str, str]) -> np.ndarray:
    return np.array([[JOINT_INDEX[a], JOINT_INDEX[b]] for a, b in names])


CORE = np.array([JOINT_INDEX[name] for name in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")])
TORSO = _pairs(("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"))
ARMS = _pairs(("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
              ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"))
LEGS = _pairs(("left_hip", "left_knee"), ("left_knee", "left_ankle"),
              ("right_hip", "right_knee"), ("right_knee", "right_ankle"))


@dataclass(frozen=True)
class Plausibility:
    """Thresholds of a plausible person; ``implausible`` applies them."""

    core_visibility: float = 0.6  # soft: mean confidence of shoulders and hips below this
    core_visibility_hard: float = 0.3  # hard
    arm_to_torso: float = 0.22  # soft: mean arm bone (3D) shorter than this × the torso
    leg_to_torso: float = 0.4  # soft: mean leg bone (3D) shorter than this × the torso
    torso_to_extent: float = 0.7  # soft: the 2D torso longer than this × the body's longer side
    aspect: tuple[float, float] = (0.1, 2.5)  # hard: the body's 2D width across / length along its torso outside this

    def implausible(self, keypoints_2d: np.ndarray, keypoints_3d: np.ndarray | None = None) -> list[str]:
        """Why a pose is not a plausible person; empty when it is.

        keypoints_2d: (J, 3) canonical x px, y px, confidence; keypoints_3d: (J, 3) metres or None
        (then the limb checks are skipped). Missing joints are NaN.
        """
        hard, soft = [], []
        core = np.nan_to_num(keypoints_2d[CORE, 2]).mean()
        if core < self.core_visibility_hard:
            hard.append("core joints unseen")
        elif core < self.core_visibility:
            soft.append("core joints doubtful")
        xy = keypoints_2d[:, :2]
        present = xy[~np.isnan(xy).any(axis=1)]
        if len(present) < 2:
            return ["no body"]
        across, along = body_extent(present, xy)
        low, high = self.aspect
        if not low * along <= across <= high * along:
            hard.append(f"aspect {across / max(along, 1e-6):.2f}")
        torso_2d = bone_lengths(xy, TORSO)
        if torso_2d > self.torso_to_extent * max(across, along):
            soft.append("torso fills the body")
        if keypoints_3d is not None:
            torso = bone_lengths(keypoints_3d, TORSO)
            if bone_lengths(keypoints_3d, ARMS) < self.arm_to_torso * torso:
                soft.append("stub arms")
            if bone_lengths(keypoints_3d, LEGS) < self.leg_to_torso * torso:
                soft.append("stub legs")
        return hard + soft if hard or len(soft) >= 2 else []


def body_extent(present: np.ndarray, keypoints: np.ndarray) -> tuple[float, float]:
    """The extent of ``present`` points (N, 2) across and along the body's axis (shoulder centre to hip centre
    of ``keypoints`` (J, 2)), so that a person lying down has the aspect of one standing; the image axes
    when the torso is missing."""
    axis = np.nanmean(keypoints[TORSO[:, 1]], axis=0) - np.nanmean(keypoints[TORSO[:, 0]], axis=0)
    length = float(np.linalg.norm(axis)) if not np.isnan(axis).any() else 0.0
    along = axis / length if length > 1e-6 else np.array([0.0, 1.0])
    across = np.array([-along[1], along[0]])
    return float(np.ptp(present @ across)), float(np.ptp(present @ along))


def bone_lengths(points: np.ndarray, bones: np.ndarray) -> float:
    """Mean length of ``bones`` ((B, 2) joint indices) in ``points`` (J, D); NaN bones are left out, 0 if all are."""
    lengths = np.linalg.norm(points[bones[:, 0]] - points[bones[:, 1]], axis=1)
    lengths = lengths[~np.isnan(lengths)]
    return float(lengths.mean()) if len(lengths) else 0.0


DEFAULT = Plausibility()
