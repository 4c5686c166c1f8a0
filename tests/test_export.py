"""Animation export (outputs.animation, outputs.gltf, outputs.bvh): the maths on synthetic bodies, then real
runs of vid.mp4 read back by independent readers (pygltflib, a BVH parser written here, the Khronos
validator, three.js in Node, Blender)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from outputs import animation, bvh, gltf
from outputs.animation import (
    CAMERA_TO_WORLD,
    SMPL_JOINTS_IN_NATIVE,
    forward_kinematics,
    keypoint_animation,
    keypoint_positions,
    rotation_between_frames,
    shortest_rotation,
    track_frames,
)
from outputs.report import read_messages
from pose.skeleton import JOINT_INDEX

from conftest import ROOT, SHARED, VIDEO, free_port, launch

HMR2_CHECKPOINT = SHARED / "fixtures" / "hmr2" / "small_checkpoint.ckpt"
JS = ROOT / "tests" / "js"


# --- independent readers ----------------------------------------------------------------------------------------

def read_glb(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """(joint names, keyframe times (F,), joint world positions (F, J, 3) evaluated from the file's nodes and
    animation, the animation's extras) with pygltflib, joints being the nodes under the root's tree."""
    from pygltflib import GLTF2

    document = GLTF2().load(str(path))
    blob = document.binary_blob()
    dtypes = {5126: "<f4", 5121: "u1", 5123: "<u2", 5125: "<u4"}
    widths = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}

    def read(index: int) -> np.ndarray:
        accessor = document.accessors[index]
        view = document.bufferViews[accessor.bufferView]
        width = widths[accessor.type]
        values = np.frombuffer(blob, dtypes[accessor.componentType], accessor.count * width,
                               view.byteOffset + (accessor.byteOffset or 0))
        return values.reshape(accessor.count, width).astype(np.float64)

    clip = document.animations[0]
    times = read(clip.samplers[0].input)[:, 0]
    nodes = document.nodes
    translation = {i: np.tile(n.translation or [0.0, 0.0, 0.0], (len(times), 1)) for i, n in enumerate(nodes)}
    rotation = {i: np.tile(n.rotation or [0.0, 0.0, 0.0, 1.0], (len(times), 1)) for i, n in enumerate(nodes)}
    for channel in clip.channels:
        sampler = clip.samplers[channel.sampler]
        assert read(sampler.input)[:, 0].tolist() == times.tolist()
        {"translation": translation, "rotation": rotation}[channel.target.path][channel.target.node] = \
            read(sampler.output)
    names, positions = [], []

    def visit(node: int, parent_position: np.ndarray, parent_rotation: Rotation) -> None:
        names.append(nodes[node].name)
        position = parent_position + parent_rotation.apply(translation[node])
        positions.append(position)
        world = parent_rotation * Rotation.from_quat(rotation[node])
        for child in nodes[node].children or []:
            visit(child, position, world)

    root = document.scenes[0].nodes[0]
    visit(root, np.zeros((len(times), 3)), Rotation.identity(len(times)))
    return names, times, np.stack(positions, axis=1), clip.extras


def read_bvh(path: Path) -> tuple[list[str], float, np.ndarray]:
    """(joint names, frame time, joint world positions (F, J, 3) in the file's units): a plain BVH parser.

    A joint's translation from its parent is its position channels where it has them (they replace its
    OFFSET, as Blender reads them), else its OFFSET; then its rotation channels apply in
    the order listed (intrinsic: the first channel's axis outermost)."""
    tokens = path.read_text().split()
    cursor = 0
    joints: list[dict] = []  # name, parent, offset, channels

    def take() -> str:
        nonlocal cursor
        cursor += 1
        return tokens[cursor - 1]

    def joint(parent: int) -> None:
        name = take()
        assert take() == "{"
        assert take() == "OFFSET"
        entry = {"name": name, "parent": parent, "offset": np.array([float(take()) for _ in range(3)])}
        assert take() == "CHANNELS"
        entry["channels"] = [take() for _ in range(int(take()))]
        joints.append(entry)
        me = len(joints) - 1
        while (word := take()) != "}":
            if word == "JOINT":
                joint(me)
            else:  # End Site { OFFSET x y z }
                assert (word, take(), take(), take()) == ("End", "Site", "{", "OFFSET")
                cursor_skip = [take() for _ in range(4)]
                assert cursor_skip[-1] == "}"

    assert take() == "HIERARCHY" and take() == "ROOT"
    joint(-1)
    assert (take(), take()) == ("MOTION", "Frames:")
    frames = int(take())
    assert (take(), take()) == ("Frame", "Time:")
    frame_time = float(take())
    values = np.array(tokens[cursor:], dtype=np.float64).reshape(frames, -1)
    positions = np.zeros((frames, len(joints), 3))
    world = [None] * len(joints)
    column = 0
    for index, entry in enumerate(joints):
        local_position = np.tile(entry["offset"], (frames, 1))
        local_rotation = Rotation.identity(frames)
        for channel in entry["channels"]:
            axis = channel[0].lower()
            if channel.endswith("position"):
                local_position[:, "xyz".index(axis)] = values[:, column]
            else:
                local_rotation = local_rotation * Rotation.from_euler(axis, values[:, column, None], degrees=True)
            column += 1
        parent = entry["parent"]
        if parent < 0:
            positions[:, index], world[index] = local_position, local_rotation
        else:
            positions[:, index] = positions[:, parent] + world[parent].apply(local_position)
            world[index] = world[parent] * local_rotation
    return [entry["name"] for entry in joints], frame_time, positions


# --- the maths ----------------------------------------------------------------------------------------------------

def test_shortest_rotation_turns_one_direction_onto_another():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    a[0], b[0] = [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]  # opposite: a half turn about some perpendicular axis
    R = shortest_rotation(a, b)
    turned = np.einsum("fij,fj->fi", R, a / np.linalg.norm(a, axis=1, keepdims=True))
    assert np.allclose(turned, b / np.linalg.norm(b, axis=1, keepdims=True), atol=1e-9)
    assert np.allclose(R @ np.swapaxes(R, 1, 2), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(R), 1.0)
    axis = np.cross(a[1:], b[1:])  # the smallest turn keeps a × b where it is
    assert np.allclose(np.einsum("fij,fj->fi", R[1:], axis), axis, atol=1e-9)


def test_rotation_between_frames_recovers_a_rotation():
    truth = Rotation.random(50, random_state=1).as_matrix()
    primary, secondary = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.2])
    solved = rotation_between_frames(truth @ primary, truth @ secondary, primary, secondary)
    assert np.allclose(solved, truth, atol=1e-9)


def synthetic_keypoint_job(frames: int = 30) -> list[dict]:
    """A body of fixed bone lengths (the keypoint tree with made-up offsets) moving and turning: its canonical
    camera-frame keypoints as a BlazePose-like job."""
    rng = np.random.default_rng(3)
    names = animation.KEYPOINT_JOINTS
    offsets = np.array([np.asarray(rest, float) * length for (_, _, rest), length
                        in zip(animation.KEYPOINT_TREE.values(), rng.uniform(0.05, 0.4, len(names)))])
    offsets[names.index("right_hip")] = -offsets[names.index("left_hip")]  # pelvis: the hips' midpoint
    offsets[names.index("right_shoulder")] = -offsets[names.index("left_shoulder")]  # neck: the shoulders'
    offsets[names.index("right_ear")] = -offsets[names.index("left_ear")]  # head: the ears'
    offsets[names.index("left_heel")] = [0.0, -0.05, -0.04]
    offsets[names.index("right_heel")] = [0.0, -0.05, -0.04]
    for eye, x in (("left_eye", 0.03), ("right_eye", -0.03), ("nose", 0.0)):
        offsets[names.index(eye)] = [x, 0.02, 0.1]
    skeleton = animation.Skeleton(names, tuple(names.index(p) if p else -1 for p, _, _ in
                                               animation.KEYPOINT_TREE.values()), offsets)
    angles = np.linspace(0, 1, frames)[:, None, None] * rng.normal(scale=0.6, size=(1, len(names), 3))
    rotations = Rotation.from_rotvec(angles.reshape(-1, 3)).as_matrix().reshape(frames, len(names), 3, 3)
    roots = np.column_stack([np.linspace(-1, 1, frames), np.zeros(frames), np.full(frames, -6.0)])
    world, _ = forward_kinematics(skeleton, roots, rotations)
    camera = world @ CAMERA_TO_WORLD.T
    people = []
    for f in range(frames):
        keypoints = np.full((len(JOINT_INDEX), 3), np.nan)
        for j, name in enumerate(names):
            if name in JOINT_INDEX:
                keypoints[JOINT_INDEX[name]] = camera[f, j]
        people.append({"track_id": 1, "state": "observed" if f % 5 else "interpolated", "keypoints_3d": keypoints})
    start = {"type": "job_start", "job": "synthetic", "fps": 25.0, "detector": "blazepose"}
    body = [{"type": "frame", "job": "synthetic", "index": f, "pts_ms": f * 40.0, "people": [p]}
            for f, p in enumerate(people)]
    return [start, *body, {"type": "job_end", "job": "synthetic", "frames": frames, "status": "ok"}]


def test_a_body_of_fixed_bone_lengths_is_reproduced():
    job = synthetic_keypoint_job()
    start, (track,) = track_frames(job)
    result = keypoint_animation(track, start)
    keypoints = keypoint_positions(np.array([p["keypoints_3d"] for p in track.people]))
    for offsets in (None, result.motion.offsets):  # the rest skeleton alone carries a rigid body
        positions, _ = forward_kinematics(result.skeleton, result.motion.root_positions, result.motion.rotations,
                                          offsets)
        assert np.abs(positions - keypoints).max() < 1e-6


def test_bone_lengths_that_change_are_animated_around_their_median():
    job = synthetic_keypoint_job(31)
    stretch = np.linspace(0.6, 1.4, 31)  # the left forearm, 60% to 140% of its length
    for message, factor in zip(job[1:-1], stretch):
        keypoints = message["people"][0]["keypoints_3d"]
        elbow, wrist = JOINT_INDEX["left_elbow"], JOINT_INDEX["left_wrist"]
        keypoints[wrist] = keypoints[elbow] + factor * (keypoints[wrist] - keypoints[elbow])
    start, (track,) = track_frames(job)
    result = keypoint_animation(track, start)
    keypoints = keypoint_positions(np.array([p["keypoints_3d"] for p in track.people]))
    positions, _ = forward_kinematics(result.skeleton, result.motion.root_positions, result.motion.rotations,
                                      result.motion.offsets)
    assert np.abs(positions - keypoints).max() < 1e-6
    wrist = animation.KEYPOINT_JOINTS.index("left_wrist")
    lengths = np.linalg.norm(result.motion.offsets[:, wrist], axis=-1)
    observed = [s == "observed" for s in result.motion.states]
    assert np.linalg.norm(result.skeleton.offsets[wrist]) == pytest.approx(np.median(lengths[observed]))
    # the bone its parent aims at keeps its rest direction: only its length moves
    directions = result.motion.offsets[:, wrist] / lengths[:, None]
    assert np.allclose(directions, result.skeleton.offsets[wrist] / np.linalg.norm(result.skeleton.offsets[wrist]))


def test_filled_frames_are_keyframes_marked_in_extras(tmp_path):
    job = synthetic_keypoint_job(12)
    # the person missing from frame 7: the track holds its last pose there, marked absent
    job[8]["people"] = []
    (path,) = gltf.write_gltf(job, tmp_path)
    assert path.name == "synthetic.track1.glb"
    _, times, _, extras = read_glb(path)
    assert times.tolist() == pytest.approx([f * 0.04 for f in range(12)])
    assert extras["frames"] == list(range(12))
    assert extras["states"] == ["interpolated", *["observed"] * 4, "interpolated", "observed", "absent",
                                "observed", "observed", "interpolated", "observed"]


def test_files_are_written_atomically(tmp_path):
    target = tmp_path / "a.glb"
    target.write_bytes(b"old")
    gltf.write_atomically(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.glb"]

    with pytest.raises(TypeError):
        gltf.write_atomically(target, "not bytes")  # fails mid-write: the old file stays, no temporary is left
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.glb"]


def test_a_job_with_nobody_tracked_is_refused(tmp_path):
    job = synthetic_keypoint_job(3)
    for message in job[1:4]:
        message["people"] = []
    with pytest.raises(ValueError, match="nobody was tracked"):
        bvh.write_bvh(job, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, said", [
    ('{"type": "job_end", "job": "x", "frames": 0, "status": "error"}\n', "no job_start"),
    ('{"type": "job_start", "job": "x"}\n{"type": "frame", "index": 0}\n', "not a posebus results file"),
    ("garbage\n", "error"),
])
@pytest.mark.parametrize("writer", [gltf, bvh])
def test_a_bad_results_file_gets_one_line(writer, text, said, tmp_path, capsys):
    results = tmp_path / "vid.jsonl"
    results.write_text(text)
    assert writer.main([str(results)]) == 1
    error = capsys.readouterr().err
    assert said in error and error.count("\n") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["vid.jsonl"]


# --- real runs ---------------------------------------------------------------------------------------------------

class Run(NamedTuple):
    results: Path
    messages: list[dict]
    glb: Path
    bvh: Path


def export(results: Path, *args: str) -> Run:
    assert gltf.main([str(results), *args]) == 0
    assert bvh.main([str(results), *args]) == 0
    return Run(results, read_messages(results), results.parent / "vid.track1.glb", results.parent / "vid.track1.bvh")


@pytest.fixture(scope="module")
def blazepose_run(tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("blazepose")
    result = launch(VIDEO, "--out", out, "--job", "vid", "--results", f"tcp://127.0.0.1:{free_port()}",
                    "--record", out / "recorded")
    assert result.returncode == 0, result.stderr
    return export(out / "vid.jsonl")


@pytest.fixture(scope="module")
def hmr2_run(tmp_path_factory) -> Run:
    """HMR 2.0 (the fixture checkpoint and its synthetic SMPL) on every frame of vid.mp4, smoothed (the
    default): the track stage, given the launcher's --checkpoint, derives the native keypoints from the
    smoothed SMPL parameters (detectors.hmr2.reposer)."""
    out = tmp_path_factory.mktemp("hmr2")
    result = launch(VIDEO, "--out", out, "--job", "vid", "--results", f"tcp://127.0.0.1:{free_port()}",
                    "--detector", "hmr2", "--checkpoint", HMR2_CHECKPOINT, "--mesh", timeout=900)
    assert result.returncode == 0, result.stderr
    return export(out / "vid.jsonl", "--checkpoint", str(HMR2_CHECKPOINT))


def primary(messages: list[dict]) -> list[dict]:
    return [m["people"][0] for m in messages if m["type"] == "frame"]


def back_to_camera(positions: np.ndarray) -> np.ndarray:
    """World (glTF/BVH axes, metres) -> camera frame: the documented axis change, undone."""
    return positions @ CAMERA_TO_WORLD.T


def smpl_joint_errors(run: Run, names: list[str], world: np.ndarray) -> np.ndarray:
    """(F, 14) distances, metres, between the file's SMPL joints and the published keypoints_3d_native ones."""
    people = primary(run.messages)
    native = np.array([p["keypoints_3d_native"] for p in people], dtype=np.float64)
    translation = np.array([p["camera"]["translation"] for p in people], dtype=np.float64)
    camera = back_to_camera(world) - translation[:, None]
    return np.stack([np.linalg.norm(camera[:, names.index(animation.SMPL_JOINTS[smpl])] - native[:, keypoint], axis=-1)
                     for keypoint, smpl in SMPL_JOINTS_IN_NATIVE.items()], axis=1)


def test_hmr2_gltf_and_bvh_reproduce_the_smpl_joints_within_1cm(hmr2_run):
    names, times, world, extras = read_glb(hmr2_run.glb)
    assert len(times) == 180 and extras["frames"] == list(range(180))
    errors = smpl_joint_errors(hmr2_run, names, world)
    print(f"HMR 2.0 glTF: max {errors.max() * 100:.3f} cm, mean {errors.mean() * 100:.3f} cm over 14 joints")
    assert errors.max() < 0.01
    bvh_names, frame_time, bvh_world = read_bvh(hmr2_run.bvh)
    assert sorted(bvh_names) == sorted(animation.SMPL_JOINTS) and frame_time == pytest.approx(1 / 30)
    errors = smpl_joint_errors(hmr2_run, bvh_names, bvh_world / 100)
    print(f"HMR 2.0 BVH: max {errors.max() * 100:.3f} cm")
    assert errors.max() < 0.01


def test_hmr2_mesh_is_the_track_shape_skinned_to_24_joints(hmr2_run):
    from pygltflib import GLTF2

    document = GLTF2().load(str(hmr2_run.glb))
    (mesh,) = document.meshes
    positions = document.accessors[mesh.primitives[0].attributes.POSITION]
    assert positions.count == 6890 and document.accessors[mesh.primitives[0].indices].count == 13776 * 3
    assert len(document.skins[0].joints) == 24
    smpl = animation.smpl_model_from_checkpoint(HMR2_CHECKPOINT)
    betas = np.median([p["smpl"]["betas"] for p in primary(hmr2_run.messages) if p["state"] == "observed"], axis=0)
    rest = animation.shaped_vertices(smpl, betas)
    assert positions.min == pytest.approx(rest.min(axis=0).tolist(), abs=1e-6)
    assert positions.max == pytest.approx(rest.max(axis=0).tolist(), abs=1e-6)


def keypoint_errors(run: Run, names: list[str], world: np.ndarray) -> np.ndarray:
    """(F, J) distances, metres, from the file's joints to the published keypoints_3d (the canonical joints)."""
    measured = np.array([p["keypoints_3d"] for p in primary(run.messages)], dtype=np.float64)
    canonical = [n for n in animation.KEYPOINT_JOINTS if n in JOINT_INDEX]
    assert not np.isnan(measured[:, [JOINT_INDEX[n] for n in canonical]]).any()
    camera = back_to_camera(world[:, [names.index(n) for n in canonical]])
    return np.linalg.norm(camera - measured[:, [JOINT_INDEX[n] for n in canonical]], axis=-1)


def test_blazepose_gltf_and_bvh_reproduce_the_keypoints_within_3cm(blazepose_run):
    """Every joint on every frame: the rest skeleton has the track's median bone lengths, and each joint's
    translation channel carries its bone as measured on that frame (BlazePose's forearm: 11-29 cm)."""
    names, times, world, extras = read_glb(blazepose_run.glb)
    assert len(times) == 180 and extras["frames"] == list(range(180))
    errors = keypoint_errors(blazepose_run, names, world)
    print(f"BlazePose glTF: max {errors.max() * 1000:.4f} mm, mean {errors.mean() * 1000:.4f} mm")
    assert errors.shape == (180, 23) and errors.max() < 0.03
    bvh_names, frame_time, bvh_world = read_bvh(blazepose_run.bvh)
    assert sorted(bvh_names) == sorted(animation.KEYPOINT_JOINTS) and frame_time == pytest.approx(1 / 30)
    errors = keypoint_errors(blazepose_run, bvh_names, bvh_world / 100)
    print(f"BlazePose BVH: max {errors.max() * 1000:.4f} mm")
    assert errors.max() < 0.03


# --- real consumers ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def node_checker() -> Path:
    """tests/js with its locked dev dependencies (gltf-validator, three) installed by ``npm ci``."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the glTF validator and three.js")
    if not (JS / "node_modules" / "three").exists():
        installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS,
                                   capture_output=True, text=True, timeout=300)
        assert installed.returncode == 0, installed.stderr
    return JS / "check_glb.mjs"


def check_in_node(checker: Path, glb: Path) -> dict:
    result = subprocess.run(["node", str(checker), str(glb)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("run", ["blazepose_run", "hmr2_run"])
def test_validator_and_three_js_accept_the_file(run, node_checker, request):
    run = request.getfixturevalue(run)
    checked = check_in_node(node_checker, run.glb)
    print(run.glb.name, "validator:", checked["validator"]["errors"], "errors,", checked["validator"]["warnings"],
          "warnings")
    assert checked["validator"]["errors"] == 0, checked["validator"]["messages"]
    frames = [m for m in run.messages if m["type"] == "frame"]
    (clip,) = checked["clips"]
    assert len(clip["times"]) == len(frames)
    assert clip["duration"] == pytest.approx(frames[-1]["pts_ms"] / 1000, abs=1e-6)
    # three.js's own evaluation of the animation lands where pygltflib's does
    names, _, world, _ = read_glb(run.glb)
    order = [checked["joints"].index(n) for n in names]
    assert np.abs(np.array(checked["positions"])[:, order] - world).max() < 1e-4


BLENDER_SCRIPT = """
import bpy, json, sys
path, fps = sys.argv[-2], float(sys.argv[-1])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = round(fps), round(fps) / fps
if path.endswith(".bvh"):
    # Debian's Blender 3.4 runs on Python 3.11, which dropped open()'s "rU" mode that its BVH importer uses.
    import builtins
    from io_anim_bvh import import_bvh
    import_bvh.open = lambda file, mode="r", *rest, **named: builtins.open(file, mode.replace("U", ""), *rest, **named)
    bpy.ops.import_anim.bvh(filepath=path, update_scene_fps=True, update_scene_duration=True)
else:
    # Its glTF importer still says np.bool, which Debian's numpy 1.24 no longer has.
    import numpy
    numpy.bool = bool
    bpy.ops.import_scene.gltf(filepath=path)
actions = [a for a in bpy.data.actions]
start, end = min(a.frame_range[0] for a in actions), max(a.frame_range[1] for a in actions)
# Every 10th frame, each joint in Blender's world (Z up): a bone's head, or an empty's origin (a glTF skeleton
# without a mesh comes in as empties).
armature = next((o for o in bpy.data.objects if o.type == "ARMATURE"), None)
heads = {}
for frame in range(round(start), round(end) + 1, 10):
    scene.frame_set(frame)
    heads[frame - round(start)] = (
        {b.name: list(armature.matrix_world @ b.head) for b in armature.pose.bones} if armature is not None
        else {o.name: list(o.matrix_world.translation) for o in bpy.data.objects if o.type == "EMPTY"})
print("POSEBUS" + json.dumps({"frames": round(end - start) + 1, "objects": len(bpy.data.objects), "heads": heads}))
"""


@pytest.mark.parametrize("run", ["blazepose_run", "hmr2_run"])
@pytest.mark.parametrize("suffix", ["bvh", "glb"])
def test_blender_imports_every_frame(run, suffix, request, tmp_path):
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("Blender is not installed (Debian: apt-get install --no-install-recommends blender "
                    "python3-numpy, ~650 MB): the BVH and glTF imports are not checked")
    run = request.getfixturevalue(run)
    script = tmp_path / "import.py"
    script.write_text(BLENDER_SCRIPT)
    path = run.glb if suffix == "glb" else run.bvh
    fps = next(m for m in run.messages if m["type"] == "job_start")["fps"]
    result = subprocess.run([blender, "--background", "--factory-startup", "--python-exit-code", "1",
                             "--python", str(script), "--", str(path), str(fps)],
                            capture_output=True, text=True, timeout=300)
    if "No module named 'numpy'" in result.stdout + result.stderr:
        pytest.skip("Blender's glTF importer needs numpy: apt-get install python3-numpy")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("POSEBUS"))
    imported = json.loads(line[len("POSEBUS"):])
    assert imported["frames"] == sum(m["type"] == "frame" for m in run.messages), imported["frames"]
    # Blender puts the joints where our readers do (its Z up: the file's (x, -z, y)); BVH in cm, glTF in m.
    if suffix == "bvh":
        names, _, positions = read_bvh(path)
        tolerance = 0.05
    else:
        names, _, positions, _ = read_glb(path)
        tolerance = 5e-4
    assert len(imported["heads"]) == len(range(0, imported["frames"], 10))
    for frame, heads in imported["heads"].items():
        expected = positions[int(frame)][:, [0, 2, 1]] * [1, -1, 1]
        assert np.abs(np.array([heads[n] for n in names]) - expected).max() < tolerance, frame


def replay_with_exports(run: Run, files: Path, logs: Path, **environment: str) -> None:
    """The track stage replaying the run's recorded job with --gltf FILES --bvh FILES."""
    recorded = run.results.parent / "recorded" / "vid"
    subprocess.run([sys.executable, "-m", "stages.track", "--replay", str(recorded),
                    "--gltf", str(files), "--bvh", str(files), "--results", f"tcp://127.0.0.1:{free_port()}",
                    "--history", f"tcp://127.0.0.1:{free_port()}", "--acks", f"tcp://127.0.0.1:{free_port()}",
                    "--job-log", str(logs), "--log-level", "error"], cwd=ROOT, check=True, timeout=120,
                   env={**os.environ, **environment})
    assert sorted(p.name for p in files.iterdir()) == ["vid.track1.bvh", "vid.track1.glb"]


def test_the_track_stage_writes_them_when_asked(blazepose_run, tmp_path):
    """--gltf DIR --bvh DIR: the track stage (replaying the recorded job) writes what the command line does."""
    replay_with_exports(blazepose_run, tmp_path / "files", tmp_path / "logs")
    names, times, world, extras = read_glb(tmp_path / "files" / "vid.track1.glb")
    expected_names, expected_times, expected, expected_extras = read_glb(blazepose_run.glb)
    assert (names, extras) == (expected_names, expected_extras) and np.allclose(times, expected_times)
    assert np.abs(world - expected).max() < 1e-5
    assert np.abs(read_bvh(tmp_path / "files" / "vid.track1.bvh")[2] - read_bvh(blazepose_run.bvh)[2]).max() < 1e-3


def test_the_track_stage_finds_smpl_in_the_cached_checkpoint(hmr2_run, tmp_path, monkeypatch):
    """The track stage is not told --checkpoint: its output writer takes SMPL from the 4D-Humans cache."""
    from pygltflib import GLTF2

    from detectors.hmr2.weights import CACHE_ENV, CHECKPOINT_IN_CACHE
    from outputs import write_files

    cache = tmp_path / "cache"
    (cache / CHECKPOINT_IN_CACHE).parent.mkdir(parents=True)
    (cache / CHECKPOINT_IN_CACHE).symlink_to(HMR2_CHECKPOINT)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setenv("HOME", str(tmp_path))
    decoded_start = {"type": "job_start", "job": "vid", "source": "frames"}  # what decode sends: no detector
    end = hmr2_run.messages[-1]
    write_files({"gltf": tmp_path / "files", "bvh": None}, "vid", decoded_start, end, hmr2_run.messages, log=None)
    assert len(GLTF2().load(str(tmp_path / "files" / "vid.track1.glb")).meshes) == 1
    names, _, world, _ = read_glb(tmp_path / "files" / "vid.track1.glb")
    assert names == read_glb(hmr2_run.glb)[0] and np.abs(world - read_glb(hmr2_run.glb)[2]).max() < 1e-5


def test_three_js_skins_the_smpl_mesh_as_smpl_does(hmr2_run, node_checker):
    """three.js's skinning of the .glb's mesh equals SMPL's linear blend skinning at the track's betas
    (smplx.lbs without the pose corrective blend shapes, which glTF's skinning has no place for)."""
    import torch
    from smplx.lbs import lbs

    vertices = np.array(check_in_node(node_checker, hmr2_run.glb)["vertices"])  # (F, V / 10, 3), world
    people = primary(hmr2_run.messages)
    smpl = animation.smpl_model_from_checkpoint(HMR2_CHECKPOINT)
    betas = np.median([p["smpl"]["betas"] for p in people if p["state"] == "observed"], axis=0)
    pose = torch.tensor(np.array([np.concatenate([p["smpl"]["global_orient"], p["smpl"]["body_pose"]])
                                  for p in people], dtype=np.float64))
    joints, weights = animation.top_weights(smpl.lbs_weights)
    dense = np.zeros_like(smpl.lbs_weights)
    np.add.at(dense, (np.arange(len(dense))[:, None], joints), weights)  # unused slots are joint 0, weight 0
    expected, _ = lbs(torch.tensor(betas)[None].expand(len(people), -1), pose, torch.tensor(smpl.v_template),
                      torch.tensor(smpl.shapedirs), torch.zeros(207, smpl.v_template.size, dtype=torch.float64),
                      torch.tensor(smpl.J_regressor), torch.tensor(animation.SMPL_PARENTS), torch.tensor(dense),
                      pose2rot=False)
    translation = np.array([p["camera"]["translation"] for p in people])[:, None]
    camera = back_to_camera(vertices)
    assert np.abs(camera - (expected.numpy()[:, ::10] + translation)).max() < 1e-3
    published = np.array([p["vertices"] for p in people])[:, ::10] + translation
    away = np.linalg.norm(camera - published, axis=-1)
    print(f"glTF mesh vs published vertices (pose correctives, median betas): max {away.max() * 100:.2f} cm, "
          f"mean {away.mean() * 100:.2f} cm")
