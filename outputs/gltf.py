"""Each tracked person of a job as a binary glTF 2.0 file (``.glb``): a skinned SMPL mesh (HMR 2.0) or a
skeleton (BlazePose), animated with one keyframe per frame (``outputs.animation``; docs/outputs.md).

    python -m outputs.gltf RESULTS.jsonl [-o DIR] [--checkpoint PATH]   # DIR/<job>.track<id>.glb

The file's nodes are the skeleton's joints (named as in ``outputs.animation``), the root at the scene's
top; with a mesh, a node carrying it and its skin. One animation per file: a rotation channel per joint
and the root's translation (and, for a keypoint skeleton, every joint's translation: its bone as measured
on that frame), LINEAR, keyed at ``pts_ms / 1000`` seconds. The animation's ``extras`` list
every keyframe's frame index and tracking state, so filled frames (interpolated, predicted, held) are
marked; the root node's ``extras`` say which track and detector.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from outputs.animation import Animation, SmplModel, animations, find_smpl_model, job_smpl_model, rest_positions
from outputs.atomic import write_atomically

FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
GLB_MAGIC, GLB_VERSION, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 2, 0x4E4F534A, 0x004E4942
MESH_COLOUR = [0.55, 0.7, 0.85, 1.0]


def quaternions(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (F, 3, 3) -> unit quaternions (F, 4) x, y, z, w (glTF's order), each on the same
    side as the one before (q and −q are the same rotation; keyframes interpolate the short way)."""
    q = Rotation.from_matrix(rotations).as_quat()
    flips = np.cumsum(np.einsum("fi,fi->f", q[1:], q[:-1]) < 0) % 2
    q[1:] *= np.where(flips, -1.0, 1.0)[:, None]
    return q


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals: the area-weighted sum of the adjacent faces' normals. vertices (V, 3), faces (T, 3)."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0, normals / np.where(length > 0, length, 1.0), [0.0, 1.0, 0.0])


class _Buffer:
    """The binary chunk and the bufferViews / accessors that describe it."""

    def __init__(self):
        self.data = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, component: int, target: int | None = None, bounds: bool = False) -> int:
        """Append array (N, k) or (N,) of component type ``component``; returns its accessor index."""
        dtype = {FLOAT: "<f4", UNSIGNED_BYTE: "u1", UNSIGNED_SHORT: "<u2", UNSIGNED_INT: "<u4"}[component]
        array = np.ascontiguousarray(array, dtype=dtype)
        self.data += b"\0" * (-len(self.data) % 4)
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": array.nbytes}
        if target is not None:
            view["target"] = target
        self.data += array.tobytes()
        self.views.append(view)
        width = 1 if array.ndim == 1 else int(np.prod(array.shape[1:]))
        accessor = {"bufferView": len(self.views) - 1, "componentType": component, "count": len(array),
                    "type": TYPES[width]}
        if bounds:
            flat = array.reshape(len(array), width).astype(np.float64)
            accessor["min"], accessor["max"] = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def gltf_document(animation: Animation, job: str) -> tuple[dict, bytes]:
    """The glTF JSON and its binary buffer for one track's animation."""
    skeleton, motion, mesh = animation.skeleton, animation.motion, animation.mesh
    buffer = _Buffer()
    # At rest every joint's orientation is the identity, so a node's rest transform is its offset.
    nodes = [{"name": name, "translation": skeleton.offsets[j].tolist()} for j, name in enumerate(skeleton.names)]
    for joint, parent in enumerate(skeleton.parents):
        if parent >= 0:
            nodes[parent].setdefault("children", []).append(joint)
    nodes[0]["extras"] = {"track_id": animation.track_id, "detector": animation.detector, "job": job}
    scene_nodes = [0]
    meshes, skins, materials = [], [], []
    if mesh is not None:
        vertices = mesh.vertices
        attributes = {
            "POSITION": buffer.add(vertices, FLOAT, ARRAY_BUFFER, bounds=True),
            "NORMAL": buffer.add(vertex_normals(vertices, mesh.faces), FLOAT, ARRAY_BUFFER),
            "JOINTS_0": buffer.add(mesh.joints, UNSIGNED_BYTE if len(skeleton.names) < 256 else UNSIGNED_SHORT,
                                   ARRAY_BUFFER),
            "WEIGHTS_0": buffer.add(mesh.weights, FLOAT, ARRAY_BUFFER),
        }
        indices = buffer.add(mesh.faces.reshape(-1), UNSIGNED_SHORT if len(vertices) < 65535 else UNSIGNED_INT,
                             ELEMENT_ARRAY_BUFFER)
        # Inverse bind matrices: the inverse of each joint's rest world transform, a translation (column-major).
        inverse_bind = np.tile(np.eye(4), (len(skeleton.names), 1, 1))
        inverse_bind[:, :3, 3] = -rest_positions(skeleton)
        skins.append({"name": "skeleton", "joints": list(range(len(skeleton.names))), "skeleton": 0,
                      "inverseBindMatrices": buffer.add(np.swapaxes(inverse_bind, 1, 2).reshape(-1, 16), FLOAT)})
        materials.append({"name": "body", "pbrMetallicRoughness": {"baseColorFactor": MESH_COLOUR,
                                                                   "metallicFactor": 0.0, "roughnessFactor": 0.8}})
        meshes.append({"name": "body", "primitives": [{"attributes": attributes, "indices": indices,
                                                       "material": 0}]})
        nodes.append({"name": "body", "mesh": 0, "skin": 0})
        scene_nodes.append(len(nodes) - 1)

    # Seconds from the job's first frame (not the track's), so the tracks of a job line up with each other.
    time_accessor = buffer.add(motion.times, FLOAT, bounds=True)
    samplers = [{"input": time_accessor, "output": buffer.add(motion.root_positions, FLOAT),
                 "interpolation": "LINEAR"}]
    channels = [{"sampler": 0, "target": {"node": 0, "path": "translation"}}]
    for joint in range(len(skeleton.names)):
        samplers.append({"input": time_accessor, "output": buffer.add(quaternions(motion.rotations[:, joint]), FLOAT),
                         "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": joint, "path": "rotation"}})
        if motion.offsets is not None and joint > 0:  # bone lengths that change along the clip
            samplers.append({"input": time_accessor, "output": buffer.add(motion.offsets[:, joint], FLOAT),
                             "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": joint, "path": "translation"}})
    animation_json = {
        "name": f"{job} track {animation.track_id}", "samplers": samplers, "channels": channels,
        "extras": {"fps": animation.fps, "frames": motion.frames.tolist(), "states": list(motion.states)},
    }
    document = {
        "asset": {"version": "2.0", "generator": "posebus outputs.gltf"},
        "scene": 0, "scenes": [{"name": job, "nodes": scene_nodes}], "nodes": nodes,
        "animations": [animation_json],
        "buffers": [{"byteLength": len(buffer.data) + (-len(buffer.data) % 4)}],
        "bufferViews": buffer.views, "accessors": buffer.accessors,
    }
    if mesh is not None:
        document.update(meshes=meshes, skins=skins, materials=materials)
    return document, bytes(buffer.data)


def glb_bytes(document: dict, binary: bytes) -> bytes:
    """A binary glTF: the 12-byte header, the JSON chunk (padded with spaces), the BIN chunk (padded with zeros)."""
    text = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    length = 12 + 8 + len(text) + 8 + len(binary)
    return (struct.pack("<III", GLB_MAGIC, GLB_VERSION, length) + struct.pack("<II", len(text), JSON_CHUNK) + text
            + struct.pack("<II", len(binary), BIN_CHUNK) + binary)


def track_path(folder: Path, job: str, track_id: int, suffix: str) -> Path:
    """FOLDER/<job>.track<id>.<suffix>: one file per track."""
    return Path(folder) / f"{job}.track{track_id}.{suffix}"


def write_gltf(messages: list[dict], folder: str | Path, smpl: SmplModel | None = None) -> list[Path]:
    """One ``.glb`` per track of a job into ``folder``; returns the paths. SMPL meshes when ``smpl`` is given
    and the job has SMPL parameters, else skeletons. Raises ValueError for a job with nobody tracked."""
    job, found = animations(messages, smpl)
    return [write_atomically(track_path(folder, job, a.track_id, "glb"), glb_bytes(*gltf_document(a, job)))
            for a in found]


def write(messages: list[dict], path: Path, checkpoint: str | Path | None = None) -> list[Path]:
    """The job's file output (``outputs.FILES``): one ``.glb`` per track beside ``path``
    (DIR/<job>.glb -> DIR/<job>.track<id>.glb); an HMR 2.0 job's SMPL is ``checkpoint``'s (``job_smpl_model``)."""
    return write_gltf(messages, Path(path).parent, job_smpl_model(messages, checkpoint))


def export_main(prog: str, write, argv: list[str] | None) -> int:
    """The command line shared by ``outputs.gltf`` and ``outputs.bvh``: RESULTS.jsonl -> one file per track."""
    from detectors.hmr2 import CHECKPOINT
    from outputs.report.page import read_messages

    parser = argparse.ArgumentParser(prog=prog, description=sys.modules[write.__module__].__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a DIR/<job>.jsonl file written by launch.py --out DIR")
    parser.add_argument("-o", "--output", type=Path, help="folder to write to (default: the results' folder)")
    CHECKPOINT.add_to(parser)  # the HMR 2.0 checkpoint whose SMPL model to use
    args = parser.parse_args(argv)
    try:
        messages = read_messages(args.results)
        smpl = None
        if any(m["type"] == "job_start" and m.get("detector") == "hmr2" for m in messages):
            smpl = find_smpl_model(args.checkpoint)
            if smpl is None:
                print(f"{prog}: no HMR 2.0 checkpoint found: writing skeletons from keypoints_3d", file=sys.stderr)
        folder = args.output or args.results.parent
        folder.mkdir(parents=True, exist_ok=True)
        paths = write(messages, folder, smpl)
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, IndexError) as exc:  # a message without a field it must have
        print(f"{prog}: error: {args.results}: not a posebus results file ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 1
    print("\n".join(map(str, paths)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return export_main("python -m outputs.gltf", write_gltf, argv)


if __name__ == "__main__":
    sys.exit(main())
