"""The plausibility check keeps real bodies, including a tucked rider, and rejects skeletons no person has."""
import numpy as np

from pose.plausibility import DEFAULT
from pose.skeleton import CANONICAL_JOINTS, JOINT_INDEX

# A person standing, arms hanging a little out: (x, y) metres, y down, hips at 0.
STANDING = {
    "nose": (0, -0.65), "left_eye": (0.03, -0.68), "right_eye": (-0.03, -0.68), "left_ear": (0.07, -0.66),
    "right_ear": (-0.07, -0.66), "left_shoulder": (0.18, -0.5), "right_shoulder": (-0.18, -0.5),
    "left_elbow": (0.25, -0.22), "right_elbow": (-0.25, -0.22), "left_wrist": (0.3, 0.03), "right_wrist": (-0.3, 0.03),
    "left_hip": (0.1, 0), "right_hip": (-0.1, 0), "left_knee": (0.12, 0.42), "right_knee": (-0.12, 0.42),
    "left_ankle": (0.12, 0.82), "right_ankle": (-0.12, 0.82), "pelvis": (0, 0), "neck": (0, -0.5),
    "left_heel": (0.12, 0.86), "right_heel": (-0.12, 0.86),
    "left_big_toe": (0.16, 0.88), "right_big_toe": (-0.16, 0.88),
}


def pose(points: dict, visibility: float = 0.9, scale: float = 200, origin=(320, 200)):
    """Canonical keypoints_2d (px, scaled) and keypoints_3d (metres, 3 m away) of named (x, y) points."""
    k2 = np.full((len(CANONICAL_JOINTS), 3), np.nan, np.float32)
    k3 = np.full((len(CANONICAL_JOINTS), 3), np.nan, np.float32)
    for name, (x, y) in points.items():
        k2[JOINT_INDEX[name]] = (origin[0] + scale * x, origin[1] + scale * y, visibility)
        k3[JOINT_INDEX[name]] = (x, y, 3.0)
    return k2, k3


def moved(points: dict, **changes) -> dict:
    return {**points, **changes}


def test_a_standing_person_is_plausible():
    assert DEFAULT.implausible(*pose(STANDING)) == []


def test_one_doubtful_sign_alone_is_kept():
    tucked = moved(STANDING, left_knee=(0.15, -0.3), right_knee=(-0.15, -0.3), left_ankle=(0.12, 0.05),
                   right_ankle=(-0.12, 0.05), left_heel=(0.12, 0.08), right_heel=(-0.12, 0.08),
                   left_big_toe=(0.16, 0.1), right_big_toe=(-0.16, 0.1))
    assert DEFAULT.implausible(*pose(tucked)) == []
    k2, k3 = pose(STANDING)
    k2[JOINT_INDEX["left_hip"], 2] = 0.0  # a board-grab hides a hip: core visibility 0.675
    k2[JOINT_INDEX["right_hip"], 2] = 0.5
    assert DEFAULT.implausible(k2, k3) == []


def test_a_skeleton_with_stub_limbs_and_a_torso_that_fills_it_is_rejected():
    # The airbag tube's pose: arms folded into the torso, legs half length, torso the whole body.
    tube = {name: (0.3 * x, y) for name, (x, y) in STANDING.items()}
    tube.update(left_elbow=(0.06, -0.45), right_elbow=(-0.06, -0.45), left_wrist=(0.05, -0.42),
                right_wrist=(-0.05, -0.42), left_knee=(0.03, 0.08), right_knee=(-0.03, 0.08),
                left_ankle=(0.03, 0.15), right_ankle=(-0.03, 0.15))
    for name in ("left_heel", "right_heel", "left_big_toe", "right_big_toe", "nose", "left_eye", "right_eye",
                 "left_ear", "right_ear"):
        tube.pop(name)
    why = DEFAULT.implausible(*pose(tube))
    assert "stub arms" in why and "torso fills the body" in why


def test_a_body_far_wider_than_tall_or_with_unseen_core_joints_is_rejected():
    flat = {name: (3 * x, 0.2 * y) for name, (x, y) in STANDING.items()}
    assert DEFAULT.implausible(*pose(flat))[0].startswith("aspect")
    assert DEFAULT.implausible(*pose(STANDING, visibility=0.2)) == ["core joints unseen"]


def test_without_3d_the_2d_signs_still_count():
    k2, _ = pose(STANDING)
    assert DEFAULT.implausible(k2, None) == []
    k2, _ = pose(STANDING, visibility=0.5)
    torso_only = k2.copy()
    for name in ("left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_knee", "right_knee", "left_ankle",
                 "right_ankle", "left_heel", "right_heel", "left_big_toe", "right_big_toe", "nose", "left_eye",
                 "right_eye", "left_ear", "right_ear"):
        torso_only[JOINT_INDEX[name]] = np.nan
    assert DEFAULT.implausible(torso_only, None) == ["core joints doubtful", "torso fills the body"]
