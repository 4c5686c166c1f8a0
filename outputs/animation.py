"""Each tracked person of a job as a skeleton and its motion, for the file formats (outputs.gltf, outputs.bvh).

A ``Skeleton`` is a joint tree at rest: names, parents and each joint's offset
from its parent (metres); every joint's rest orientation is the identity, so a
joint's rest world position is the sum of the offsets up to it. A ``Motion``
gives, per keyframe, the root's world position and every joint's rotation
relative to its parent (the root's: to the world). Forward kinematics, as glTF
and BVH both evaluate it:

    world_rotation[j] = world_rotation[parent[j]] · rotation[j]
    position[j]       = position[parent[j]] + world_rotation[parent[j]] · offset[j]

**World axes** (both formats): +Y up, metres, the camera at the origin looking
down −Z, so the world is the camera frame (OpenCV: x right, y down, z forward)
turned 180° about x: ``world = CAMERA_TO_WORLD · camera``. A person facing the
camera faces +Z, glTF's "forward", and the root moves as the person moves in
the camera frame.

Two ways to get there:

- ``smpl_animation`` (HMR 2.0): SMPL's 24-joint tree; rest joints regressed
  from the neutral mesh with the track's betas (their median over its observed
  frames), rotations ``global_orient`` (turned into world axes) and
  ``body_pose`` as published, the root at ``J_0 + camera.translation``. SMPL's
  rest frame is already +Y up, facing +Z.
- ``keypoint_animation`` (BlazePose, or any detector without SMPL): a tree of
  the canonical joints (plus three joints of zero or derived length, below)
  whose rest bone lengths are the track's median measured lengths, and whose
  rotations are solved from ``keypoints_3d``: a joint with one bone takes the
  shortest rotation from its parent's orientation onto the measured bone
  direction (so limbs inherit their twist from the trunk), and the trunk,
  head and feet take their twist from a second measured direction: the hip
  line (pelvis), the shoulder line (spine and neck), the ear line (head) and
  the heel (ankle). See ``KEYPOINT_TREE``. A detector's bone lengths vary
  from frame to frame (BlazePose's forearm: 11–29 cm on vid.mp4), so every
  joint's offset from its parent is also animated (``Motion.offsets``): a
  bone its parent aims at changes only its length, and the skeleton puts
  every joint on its keypoint.

Filled frames (interpolated, predicted, held) are keyframes like the others;
``Motion.states`` says which is which.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose.rotations import exp_map
from pose.skeleton import JOINT_INDEX

CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # its own inverse

SMPL_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# SMPL joints among HMR 2.0's 44 published keypoints (keypoints_3d_native): keypoint index -> SMPL joint.
SMPL_JOINTS_IN_NATIVE = {1: 12, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 0,
                         9: 2, 10: 5, 11: 8, 12: 1, 13: 4, 14: 7}

# The keypoint skeleton: joint -> (parent, how its world rotation is solved, rest direction of its bone).
# Rotation: ("aim", child) shortest rotation from the parent's orientation onto the child's direction;
# ("frame", child, (from, to)) the child's direction and a second measured direction fix all three axes;
# None: a leaf, it keeps its parent's orientation.
# Joints not in the canonical set: spine_base and head_base sit on pelvis and neck (zero-length bones that
# let the spine and the head turn apart from the hips and the shoulders); head is the midpoint of the ears.
UP, DOWN, LEFT, RIGHT, FRONT = (0, 1, 0), (0, -1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1)
KEYPOINT_TREE: dict[str, tuple[str | None, tuple | None, tuple]] = {
    "pelvis": (None, ("frame", "left_hip", ("pelvis", "neck")), (0, 0, 0)),
    "left_hip": ("pelvis", ("aim", "left_knee"), LEFT),
    "left_knee": ("left_hip", ("aim", "left_ankle"), DOWN),
    "left_ankle": ("left_knee", ("frame", "left_big_toe", ("left_ankle", "left_heel")), DOWN),
    "left_heel": ("left_ankle", None, DOWN),
    "left_big_toe": ("left_ankle", None, FRONT),
    "right_hip": ("pelvis", ("aim", "right_knee"), RIGHT),
    "right_knee": ("right_hip", ("aim", "right_ankle"), DOWN),
    "right_ankle": ("right_knee", ("frame", "right_big_toe", ("right_ankle", "right_heel")), DOWN),
    "right_heel": ("right_ankle", None, DOWN),
    "right_big_toe": ("right_ankle", None, FRONT),
    "spine_base": ("pelvis", ("frame", "neck", ("right_shoulder", "left_shoulder")), (0, 0, 0)),
    "neck": ("spine_base", ("frame", "left_shoulder", ("pelvis", "neck")), UP),
    "left_shoulder": ("neck", ("aim", "left_elbow"), LEFT),
    "left_elbow": ("left_shoulder", ("aim", "left_wrist"), LEFT),
    "left_wrist": ("left_elbow", None, LEFT),
    "right_shoulder": ("neck", ("aim", "right_elbow"), RIGHT),
    "right_elbow": ("right_shoulder", ("aim", "right_wrist"), RIGHT),
    "right_wrist": ("right_elbow", None, RIGHT),
    "head_base": ("neck", ("frame", "head", ("right_ear", "left_ear")), (0, 0, 0)),
    "head": ("head_base", ("frame", "left_ear", ("head", "nose")), UP),
    "left_ear": ("head", None, LEFT),
    "right_ear": ("head", None, RIGHT),
    "nose": ("head", None, FRONT),
    "left_eye": ("head", None, FRONT),
    "right_eye": ("head", None, FRONT),
}
# Rest directions of the second measured direction of each "frame" joint (in the joint's rest frame).
FRAME_REFERENCE = {"pelvis": UP, "spine_base": LEFT, "neck": UP, "head_base": LEFT, "head": FRONT,
                   "left_ankle": DOWN, "right_ankle": DOWN}
KEYPOINT_JOINTS = tuple(KEYPOINT_TREE)


@dataclass(frozen=True)
class Skeleton:
    names: tuple[str, ...]  # (J,)
    parents: tuple[int, ...]  # (J,) index of each joint's parent, -1 for the root (joint 0); parents come first
    offsets: np.ndarray  # (J, 3) rest offset from the parent, metres (the root's: its rest position)


@dataclass(frozen=True)
class Motion:
    times: np.ndarray  # (F,) seconds (pts_ms / 1000)
    frames: np.ndarray  # (F,) the job's frame indices
    states: tuple[str, ...]  # (F,) observed, interpolated, predicted, held
    root_positions: np.ndarray  # (F, 3) root joint's world position, metres
    rotations: np.ndarray  # (F, J, 3, 3) each joint's rotation relative to its parent (the root's to the world)
    # (F, J, 3) each joint's offset from its parent per frame, metres, in the parent's frame (the root's row is
    # unused: root_positions); None: the skeleton's rest offsets on every frame (fixed bone lengths).
    offsets: np.ndarray | None = None


@dataclass(frozen=True)
class SkinnedMesh:
    vertices: np.ndarray  # (V, 3) rest (bind) pose, metres, world axes
    faces: np.ndarray  # (T, 3) vertex indices
    joints: np.ndarray  # (V, 4) the joints that move each vertex
    weights: np.ndarray  # (V, 4) their weights, summing to 1


@dataclass(frozen=True)
class Animation:
    track_id: int
    detector: str
    fps: float
    skeleton: Skeleton
    motion: Motion
    mesh: SkinnedMesh | None = None


@dataclass(frozen=True)
class SmplModel:
    """The numpy arrays of the neutral SMPL model that an export needs (smplx's names)."""
    v_template: np.ndarray  # (V, 3)
    shapedirs: np.ndarray  # (V, 3, B)
    J_regressor: np.ndarray  # (24, V)
    lbs_weights: np.ndarray  # (V, 24)
    faces: np.ndarray  # (T, 3)


# --- maths ---------------------------------------------------------------------------------------------------------

def forward_kinematics(skeleton: Skeleton, root_positions: np.ndarray, rotations: np.ndarray,
                       offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Joint world positions (F, J, 3) and world rotations (F, J, 3, 3).

    root_positions: (F, 3); rotations: (F, J, 3, 3) local (root: world); offsets: (F, J, 3) per-frame
    offsets from the parent (``Motion.offsets``), default the skeleton's.
    """
    positions = np.empty(rotations.shape[:-1])
    world = np.empty_like(rotations)
    for joint, parent in enumerate(skeleton.parents):
        if parent < 0:
            positions[:, joint], world[:, joint] = root_positions, rotations[:, joint]
        else:
            offset = np.broadcast_to(skeleton.offsets[joint] if offsets is None else offsets[:, joint], (len(world), 3))
            positions[:, joint] = positions[:, parent] + np.einsum("fij,fj->fi", world[:, parent], offset)
            world[:, joint] = world[:, parent] @ rotations[:, joint]
    return positions, world


def rest_positions(skeleton: Skeleton) -> np.ndarray:
    """(J, 3) joint world positions at rest: the offsets summed down the tree."""
    positions = np.zeros_like(skeleton.offsets)
    for joint, parent in enumerate(skeleton.parents):
        positions[joint] = skeleton.offsets[joint] + (positions[parent] if parent >= 0 else 0.0)
    return positions


def shortest_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3): the smallest rotation turning direction a (..., 3) onto direction b (..., 3).

    Rodrigues about a × b; for opposite directions any perpendicular axis does (the half turn).
    """
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    sin, cos = np.linalg.norm(axis, axis=-1), np.einsum("...i,...i->...", a, b)
    # a perpendicular to a: a × x, or a × y when a lies along x
    fallback = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    axis = np.where((sin < 1e-9)[..., None], fallback, axis)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(sin, cos)
    return exp_map(axis * angle[..., None])


def frame_from_directions(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """(..., 3, 3) orthonormal columns: primary, the part of secondary perpendicular to it, their cross product.

    primary, secondary: (..., 3), not parallel.
    """
    e1 = primary / np.linalg.norm(primary, axis=-1, keepdims=True)
    e3 = np.cross(e1, secondary)
    e3 /= np.linalg.norm(e3, axis=-1, keepdims=True)
    return np.stack([e1, np.cross(e3, e1), e3], axis=-1)


def rotation_between_frames(primary: np.ndarray, secondary: np.ndarray,
                            rest_primary: np.ndarray, rest_secondary: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation R with R·rest_primary along primary and R·rest_secondary in the plane of
    (primary, secondary), on secondary's side. primary, secondary: (..., 3); rest_*: (3,)."""
    measured = frame_from_directions(primary, secondary)
    rest = frame_from_directions(np.asarray(rest_primary, float), np.asarray(rest_secondary, float))
    return measured @ rest.T


def smpl_rest_joints(model: SmplModel, betas: np.ndarray) -> np.ndarray:
    """(24, 3) SMPL joints at rest for shape betas (B,): J_regressor · (v_template + shapedirs · betas)."""
    return model.J_regressor @ shaped_vertices(model, betas)


def shaped_vertices(model: SmplModel, betas: np.ndarray) -> np.ndarray:
    """(V, 3) the rest mesh of shape betas (B,)."""
    return model.v_template + model.shapedirs[..., :len(betas)] @ betas


def top_weights(weights: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(V, J) skinning weights -> the k largest per vertex: joints (V, k) int, weights (V, k) summing to 1.

    SMPL's weights have at most 4 non-zeros per vertex nearly everywhere; glTF's JOINTS_0 holds 4.
    """
    joints = np.argsort(-weights, axis=1)[:, :k]
    kept = np.take_along_axis(weights, joints, axis=1)
    # glTF wants unused slots as joint 0 with weight 0 (the validator warns of a joint named with weight 0).
    return np.where(kept > 0, joints, 0), kept / kept.sum(axis=1, keepdims=True)


# --- from a job's messages -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrackFrames:
    """The frames one track appears on, contiguous from its first to its last."""
    track_id: int
    frames: list[int]
    times: list[float]  # seconds
    people: list[dict]  # the person message per frame (a frame it is missing from repeats the one before)
    states: list[str]  # its state, "absent" where it was missing


def track_frames(messages: list[dict]) -> tuple[dict, list[TrackFrames]]:
    """(job_start, every track's frames) of one job's public messages, tracks by id.

    Raises ValueError for a job without job_start or frames.
    """
    start = next((m for m in messages if m["type"] == "job_start"), None)
    if start is None:
        raise ValueError("no job_start: the job never opened its source")
    seen: dict[int, dict[int, tuple[float, dict]]] = {}
    for message in messages:
        if message["type"] == "frame":
            for person in message["people"]:
                seen.setdefault(person["track_id"], {})[message["index"]] = (message["pts_ms"] / 1000.0, person)
    if not seen:
        raise ValueError(f"job {start['job']}: nobody was tracked")
    times = {m["index"]: m["pts_ms"] / 1000.0 for m in messages if m["type"] == "frame"}
    tracks = []
    for track_id, by_index in sorted(seen.items()):
        first, last = min(by_index), max(by_index)
        frames, people, states = list(range(first, last + 1)), [], []
        for index in frames:
            person = by_index[index][1] if index in by_index else people[-1]
            people.append(person)
            states.append(person["state"] if index in by_index else "absent")
        tracks.append(TrackFrames(track_id, frames, [times[i] for i in frames], people, states))
    return start, tracks


def _stack(people: list[dict], *keys: str) -> np.ndarray:
    def get(person):
        value = person
        for key in keys:
            value = value[key]
        return value
    return np.array([np.asarray(get(p), dtype=np.float64) for p in people])


def smpl_animation(track: TrackFrames, start: dict, model: SmplModel) -> Animation:
    """The SMPL skinned mesh and motion of one HMR 2.0 track."""
    global_orient = _stack(track.people, "smpl", "global_orient")[:, 0]  # (F, 3, 3)
    body_pose = _stack(track.people, "smpl", "body_pose")  # (F, 23, 3, 3)
    translation = _stack(track.people, "camera", "translation")  # (F, 3)
    betas_per_frame = _stack(track.people, "smpl", "betas")
    observed = np.array([s == "observed" for s in track.states])
    betas = np.median(betas_per_frame[observed] if observed.any() else betas_per_frame, axis=0)
    joints = smpl_rest_joints(model, betas)
    parents = SMPL_PARENTS
    offsets = joints - np.array([joints[p] if p >= 0 else np.zeros(3) for p in parents])
    # SMPL posed with global_orient alone turns about J_0, which stays put: the root is at J_0 + translation.
    root_positions = (joints[0] + translation) @ CAMERA_TO_WORLD.T
    rotations = np.concatenate([(CAMERA_TO_WORLD @ global_orient)[:, None], body_pose], axis=1)
    skin_joints, skin_weights = top_weights(model.lbs_weights)
    mesh = SkinnedMesh(shaped_vertices(model, betas), model.faces, skin_joints, skin_weights)
    motion = Motion(np.array(track.times), np.array(track.frames), tuple(track.states), root_positions, rotations)
    return Animation(track.track_id, "hmr2", float(start["fps"]), Skeleton(SMPL_JOINTS, parents, offsets),
                     motion, mesh)


def keypoint_positions(keypoints_3d: np.ndarray) -> np.ndarray:
    """(F, 25, 3) canonical camera-frame keypoints -> (F, J, 3) world positions of ``KEYPOINT_JOINTS``
    (spine_base at the pelvis, head_base at the neck, head the midpoint of the ears)."""
    world = keypoints_3d @ CAMERA_TO_WORLD.T
    derived = {"spine_base": world[:, JOINT_INDEX["pelvis"]], "head_base": world[:, JOINT_INDEX["neck"]],
               "head": (world[:, JOINT_INDEX["left_ear"]] + world[:, JOINT_INDEX["right_ear"]]) / 2}
    return np.stack([derived[name] if name in derived else world[:, JOINT_INDEX[name]] for name in KEYPOINT_JOINTS],
                    axis=1)


def solve_keypoint_rotations(positions: np.ndarray) -> np.ndarray:
    """World rotations (F, J, 3, 3) of ``KEYPOINT_TREE``'s joints from their measured world positions (F, J, 3):
    each bone a joint aims at points along its measured direction."""
    index = {name: i for i, name in enumerate(KEYPOINT_JOINTS)}
    world = np.empty(positions.shape[:2] + (3, 3))
    for joint, (name, (parent, solve, _)) in enumerate(KEYPOINT_TREE.items()):
        parent_rotation = world[:, index[parent]] if parent else np.broadcast_to(np.eye(3), world[:, 0].shape)
        if solve is None:
            world[:, joint] = parent_rotation
            continue
        child = solve[1]
        rest_bone = np.asarray(KEYPOINT_TREE[child][2], dtype=float)
        bone = positions[:, index[child]] - positions[:, joint]
        if solve[0] == "aim":
            world[:, joint] = shortest_rotation(parent_rotation @ rest_bone, bone) @ parent_rotation
        else:
            a, b = solve[2]
            world[:, joint] = rotation_between_frames(bone, positions[:, index[b]] - positions[:, index[a]],
                                                      rest_bone, FRAME_REFERENCE[name])
    return world


def keypoint_skeleton(positions: np.ndarray, world: np.ndarray, use: np.ndarray) -> Skeleton:
    """The rest skeleton that best carries the measured positions (F, J, 3) with world rotations (F, J, 3, 3).

    Each bone is its median measured length (over the frames ``use`` (F,) bool) along a rest direction: the
    tree's for a joint its parent aims at, else the median of the bone as seen in the parent's frame.
    """
    index = {name: i for i, name in enumerate(KEYPOINT_JOINTS)}
    offsets = np.zeros((len(KEYPOINT_JOINTS), 3))
    for joint, (name, (parent, _, rest)) in enumerate(KEYPOINT_TREE.items()):
        if parent is None:
            continue
        p = index[parent]
        bone = positions[use, joint] - positions[use, p]
        length = np.median(np.linalg.norm(bone, axis=-1))
        solve = KEYPOINT_TREE[parent][1]
        if (solve is not None and solve[1] == name) or not np.any(rest):
            direction = np.asarray(rest, dtype=float)
        else:
            local = np.einsum("fji,fj->fi", world[use, p], bone)  # the bone in the parent's frame
            direction = np.median(local / np.linalg.norm(local, axis=-1, keepdims=True), axis=0)
            direction /= np.linalg.norm(direction)
        offsets[joint] = length * direction
    parents = tuple(index[p] if p else -1 for p, _, _ in KEYPOINT_TREE.values())
    return Skeleton(KEYPOINT_JOINTS, parents, offsets)


def keypoint_animation(track: TrackFrames, start: dict) -> Animation:
    """The skeleton-only motion of one track from its camera-frame ``keypoints_3d``.

    A frame without usable keypoints (missing, or a joint the tree needs is NaN) repeats the frame before
    (the first usable one at the start). Raises ValueError for a track without one usable frame.
    """
    keypoints = np.array([np.full((len(JOINT_INDEX), 3), np.nan) if p.get("keypoints_3d") is None
                          else np.asarray(p["keypoints_3d"], dtype=np.float64) for p in track.people])
    positions = keypoint_positions(keypoints)
    usable = ~np.isnan(positions).any(axis=(1, 2))
    if not usable.any():
        raise ValueError(f"track {track.track_id}: no frame has the 3D keypoints a skeleton needs")
    fill = np.maximum.accumulate(np.where(usable, np.arange(len(usable)), -1))
    fill = np.where(fill < 0, np.argmax(usable), fill)
    positions = positions[fill]
    observed = usable & np.array([s == "observed" for s in track.states])
    world = solve_keypoint_rotations(positions)
    skeleton = keypoint_skeleton(positions, world, observed if observed.any() else usable)
    parent_world = np.stack([world[:, p] if p >= 0 else np.broadcast_to(np.eye(3), world[:, 0].shape)
                             for p in skeleton.parents], axis=1)
    rotations = np.swapaxes(parent_world, -1, -2) @ world
    # Each bone as measured, in its parent's frame: a bone the parent aims at lies along its rest direction,
    # so only its length moves; the others (right hip and shoulder, face, heel) move within the parent's frame.
    parent_positions = positions[:, [max(p, 0) for p in skeleton.parents]]
    offsets = np.einsum("fjik,fji->fjk", parent_world, positions - parent_positions)
    motion = Motion(np.array(track.times), np.array(track.frames), tuple(track.states), positions[:, 0], rotations,
                    offsets)
    return Animation(track.track_id, start.get("detector", "unknown"), float(start["fps"]), skeleton, motion)


def animations(messages: list[dict], smpl: SmplModel | None = None) -> tuple[str, list[Animation]]:
    """(the job id, one Animation per track): SMPL when the people carry SMPL parameters and ``smpl`` is
    given, else the keypoint skeleton."""
    start, tracks = track_frames(messages)
    return start["job"], [smpl_animation(track, start, smpl) if smpl is not None and track.people[0].get("smpl")
                          is not None else keypoint_animation(track, start) for track in tracks]


def smpl_model_from_checkpoint(path: str | Path) -> SmplModel:
    """The SMPL arrays of an HMR 2.0 checkpoint: the layer the track stage poses (``checkpoint.load_smpl``, read
    once per checkpoint and process), from its ``smpl.*`` buffers or, lacking them, the SMPL files beside it."""
    from detectors.hmr2.checkpoint import load_smpl

    layer = load_smpl(path)

    def array(key):
        return getattr(layer, key).double().numpy()

    return SmplModel(array("v_template"), array("shapedirs"), array("J_regressor"), array("lbs_weights"),
                     layer.faces_tensor.numpy().astype(np.int64))


def find_smpl_model(checkpoint: str | Path | None = None) -> SmplModel | None:
    """The SMPL model of ``checkpoint``, or of the HMR 2.0 checkpoint in the default cache; None if none is found."""
    from detectors.hmr2.weights import find_checkpoint

    found, _ = find_checkpoint(checkpoint)
    return None if found is None else smpl_model_from_checkpoint(found)


def job_smpl_model(messages: list[dict], checkpoint: str | Path | None = None) -> SmplModel | None:
    """For a job's published messages: when the job ran HMR 2.0, the SMPL model of ``checkpoint`` (the track
    stage's ``--checkpoint``, whose SMPL it re-posed the job with) or of the one in the 4D-Humans cache;
    else None (keypoint skeletons)."""
    start = next((m for m in messages if m["type"] == "job_start"), {})
    return find_smpl_model(checkpoint) if start.get("detector") == "hmr2" else None
