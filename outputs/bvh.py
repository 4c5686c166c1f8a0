"""Each tracked person of a job as a BVH (Biovision Hierarchy) file: the skeleton and motion of
``outputs.animation``, one frame per video frame (docs/outputs.md).

    python -m outputs.bvh RESULTS.jsonl [-o DIR] [--checkpoint PATH]   # DIR/<job>.track<id>.bvh

Conventions: +Y up, the person facing the camera faces +Z (the world of ``outputs.animation``),
**centimetres**; ``Frame Time`` is 1 / the job's fps. The root has the channels
``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` and OFFSET 0 0 0, so its position
channels are its world position (readers differ on whether they add the root's OFFSET); every other
joint has ``Zrotation Xrotation Yrotation``: its rotation relative to its parent is
``Rz(z) · Rx(x) · Ry(y)`` in degrees. A keypoint skeleton's bone lengths change from frame to frame, so
there every joint has the root's six channels, its position channels being its offset from its parent on
that frame, in place of its OFFSET (the rest pose: the median lengths), as Blender reads
them. A leaf ends in an ``End Site`` a third of its bone further on.
BVH has no place for per-frame metadata: the glTF file's extras say which frames were filled.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from outputs.animation import Animation, SmplModel, animations, job_smpl_model
from outputs.atomic import write_atomically
from outputs.gltf import export_main, track_path

CENTIMETRES = 100.0
ROTATION_ORDER = "ZXY"  # intrinsic: R = Rz · Rx · Ry
END_SITE_FRACTION = 1 / 3


def euler_degrees(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> (..., 3) angles in degrees about Z, X, Y with R = Rz · Rx · Ry."""
    shape = rotations.shape[:-2]
    angles = Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_euler(ROTATION_ORDER, degrees=True)
    return angles.reshape(*shape, 3)


def hierarchy_lines(animation: Animation) -> list[str]:
    """The HIERARCHY section: joints depth first, offsets in centimetres."""
    skeleton = animation.skeleton
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(skeleton.parents):
        children.setdefault(parent, []).append(joint)
    lines = ["HIERARCHY"]

    def visit(joint: int, depth: int) -> None:
        pad = "  " * depth
        offset = np.zeros(3) if skeleton.parents[joint] < 0 else skeleton.offsets[joint] * CENTIMETRES
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {skeleton.names[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {_numbers(offset)}")
        positions = depth == 0 or animation.motion.offsets is not None
        channels = ["Xposition", "Yposition", "Zposition"] if positions else []
        channels += [f"{axis}rotation" for axis in ROTATION_ORDER]
        lines.append(f"{pad}  CHANNELS {len(channels)} {' '.join(channels)}")
        for child in children.get(joint, []):
            visit(child, depth + 1)
        if joint not in children:
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                          f"{pad}    OFFSET {_numbers(skeleton.offsets[joint] * CENTIMETRES * END_SITE_FRACTION)}",
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    visit(0, 0)
    return lines


def motion_lines(animation: Animation) -> list[str]:
    """The MOTION section: one line per frame, channels in hierarchy order (depth first)."""
    skeleton, motion = animation.skeleton, animation.motion
    order = _depth_first(skeleton.parents)
    angles = euler_degrees(motion.rotations[:, order])  # (F, J, 3)
    if motion.offsets is None:
        values = np.concatenate([motion.root_positions * CENTIMETRES, angles.reshape(len(angles), -1)], axis=1)
    else:  # every joint: its offset from its parent on this frame (the root's: its world position), then angles
        offsets = motion.offsets.copy()
        offsets[:, 0] = motion.root_positions
        values = np.concatenate([offsets[:, order] * CENTIMETRES, angles], axis=2).reshape(len(angles), -1)
    lines = ["MOTION", f"Frames: {len(values)}", f"Frame Time: {1.0 / animation.fps:.8f}"]
    lines += [_numbers(row) for row in values]
    return lines


def bvh_text(animation: Animation) -> str:
    return "\n".join(hierarchy_lines(animation) + motion_lines(animation)) + "\n"


def write_bvh(messages: list[dict], folder: str | Path, smpl: SmplModel | None = None) -> list[Path]:
    """One ``.bvh`` per track of a job into ``folder``; returns the paths (see ``outputs.gltf.write_gltf``)."""
    job, found = animations(messages, smpl)
    return [write_atomically(track_path(folder, job, a.track_id, "bvh"), bvh_text(a).encode()) for a in found]


def _depth_first(parents: tuple[int, ...]) -> list[int]:
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(parents):
        children.setdefault(parent, []).append(joint)
    order, stack = [], [0]
    while stack:
        joint = stack.pop()
        order.append(joint)
        stack.extend(reversed(children.get(joint, [])))
    return order


def _numbers(values) -> str:
    return " ".join(f"{v:.6f}" for v in np.asarray(values, dtype=np.float64).ravel())


def write(messages: list[dict], path: Path, checkpoint: str | Path | None = None) -> list[Path]:
    """The job's file output (``outputs.FILES``): one ``.bvh`` per track beside ``path``
    (DIR/<job>.bvh -> DIR/<job>.track<id>.bvh); an HMR 2.0 job's SMPL is ``checkpoint``'s (``job_smpl_model``)."""
    return write_bvh(messages, Path(path).parent, job_smpl_model(messages, checkpoint))


def main(argv: list[str] | None = None) -> int:
    return export_main("python -m outputs.bvh", write_bvh, argv)


if __name__ == "__main__":
    sys.exit(main())
