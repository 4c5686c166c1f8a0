"""One job's results in the document shape SnowboardingExplained stores (docs/outputs.md).

``app_document(messages)`` turns a job's public messages (``job_start``, its
``frame``s, ``job_end``; arrays as numpy arrays from the bus or nested lists
from a ``launch.py --out`` file) into the old parser's shape plus the
consolidated fields: true fps, pts timestamps, tracking state, named joints.

    python -m outputs.app_json RESULTS.jsonl -o app.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bus import codec
from outputs.backfill import first_with_person, hold_first_person
from outputs.report.summary import split_job
from pose.skeleton import CANONICAL_JOINTS

PARSER_VERSION = "posebus-1"  # the old pickle_parser.py wrote "1.0"
# float32 carries about 7 significant digits; 6 decimals keep µm and µpx precision at half the text.
DECIMALS = 6
KEYPOINTS_3D_FRAME = "camera: x right, y down, z forward, metres, translation included"
MESH_FRAME = "SMPL (neutral) with global orientation, no translation: add camera.tx/ty/tz for the camera frame"


def app_document(messages: list[dict], video_id: str | None = None, include_mesh: bool = True) -> dict:
    """The app's document for one job.

    Raises ValueError when the job did not end cleanly or its frames are not
    exactly 0..N-1: the app pairs array position with video frame, so a gap
    must fail the job rather than be renumbered. Frames before anybody is first
    published hold the first person published (``outputs.backfill``).
    """
    job = split_job(messages)
    if job.start is None:
        raise ValueError(f"job {job.id}: no job_start (the source never opened)")
    if job.end is None or job.end["status"] != "ok":
        raise ValueError(f"job {job.id}: did not end cleanly: {job.end and job.end['error'] or 'no job_end'}")
    indices = [frame["index"] for frame in job.frames]
    if indices != list(range(job.end["frames"])):
        raise ValueError(f"job {job.id}: frame indices are not 0..{job.end['frames'] - 1} (got {len(indices)} frames)")
    start = job.start
    faces = start.get("mesh_faces")
    mesh_faces = np.asarray(faces).tolist() if include_mesh and faces is not None else None
    first_seen = first_with_person(job.frames)
    frames = [_frame(frame, start, mesh_faces, include_mesh) for frame in hold_first_person(job.frames)]
    return {
        "videoId": video_id or job.id,
        "fps": start["fps"],
        "frameCount": len(frames),
        "duration": len(frames) / start["fps"],
        "resolution": [start["width"], start["height"]],
        "frames": frames,
        "metadata": {
            "parserVersion": PARSER_VERSION,
            "source": start["source"],
            "detector": start.get("detector", "unknown"),
            "jointNames": list(CANONICAL_JOINTS),
            "angleKeys": list(start.get("angles", [])),
            "intrinsics": start.get("intrinsics"),
            "keypoints3dFrame": KEYPOINTS_3D_FRAME,
            "meshFrame": MESH_FRAME,
            "personSeen": first_seen is not None,  # false: nobody was seen in the whole job, every frame is empty
            "firstPersonFrame": first_seen,  # the first frame the live stream had anybody on
            "backfilledFrames": first_seen or 0,  # frames before it, holding that person (persons[].backfilled)
        },
    }


def write_app_json(messages: list[dict], path: str | Path, **options) -> Path:
    """Write ``app_document(messages, **options)`` as compact JSON (missing values are null)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(app_document(messages, **options), out, separators=(",", ":"), allow_nan=False)
    return path


def _frame(frame: dict, start: dict, mesh_faces: list | None, include_mesh: bool) -> dict:
    return {
        "frameNumber": frame["index"],
        "timestamp": frame["pts_ms"] / 1000.0,
        "persons": [_person(person, start, mesh_faces, include_mesh) for person in frame["people"]],
    }


def _person(person: dict, start: dict, mesh_faces: list | None, include_mesh: bool) -> dict:
    keypoints_2d = _array(person["keypoints_2d"])
    # keypoints_3d come from the same detection as keypoints_2d, so they share its per-joint confidence.
    confidence = keypoints_2d[:, 2]
    keypoints_3d = None if person.get("keypoints_3d") is None else _array(person["keypoints_3d"])
    smpl = person.get("smpl")
    has_mesh = include_mesh and person.get("vertices") is not None
    return {
        "personId": person["track_id"],
        # posebus publishes one confidence: the detector score, decayed 0.9 per frame away from an observation.
        "confidence": person["confidence"],
        "tracked": True,
        "trackingState": person["state"],
        "backfilled": person.get("backfilled", False),
        "trackingConfidence": person["confidence"],
        "framesSinceSeen": person["frames_since_seen"],
        "camera": camera_of(person, keypoints_3d, start.get("intrinsics")),
        "smpl": None if smpl is None else {"globalOrient": _nested(smpl["global_orient"]),
                                           "bodyPose": _nested(smpl["body_pose"]), "betas": _nested(smpl["betas"])},
        "meshVertices": _nested(person["vertices"]) if has_mesh else None,
        "meshFaces": mesh_faces if has_mesh else None,
        "bbox": _nested(person["bbox"]),
        "keypoints2d": named_joints(keypoints_2d[:, :2], confidence),
        "keypoints3d": None if keypoints_3d is None else named_joints(keypoints_3d, confidence),
        "jointAngles": dict(person["joint_angles"]),
    }


def camera_of(person: dict, keypoints_3d: np.ndarray | None, intrinsics: dict) -> dict | None:
    """The app's ``camera {tx, ty, tz, focalLength, principalPoint}`` of one person.

    HMR 2.0 publishes the body's translation in the camera frame. BlazePose has
    no body model, so its root is the pelvis of its camera-frame keypoints_3d
    (the point a root-relative pose is hung from) and the focal length is the
    job's intrinsics. None when neither is known.
    """
    if person.get("camera") is not None:
        camera = person["camera"]
        tx, ty, tz = _nested(camera["translation"])
        return {"tx": tx, "ty": ty, "tz": tz, "focalLength": float(camera["focal_length"]),
                "principalPoint": _nested(camera["principal_point"])}
    if keypoints_3d is None or intrinsics is None:
        return None
    tx, ty, tz = _nested(keypoints_3d[CANONICAL_JOINTS.index("pelvis")])
    if tx is None:
        return None
    return {"tx": tx, "ty": ty, "tz": tz, "focalLength": float(intrinsics["fx"]),
            "principalPoint": [float(intrinsics["cx"]), float(intrinsics["cy"])]}


def named_joints(points: np.ndarray, confidence: np.ndarray) -> list[dict]:
    """(J, 2 or 3) canonical joints -> ``[{name, position {x, y[, z]}, confidence}]`` in canonical order.

    Every joint is listed, so the names are an explicit, fixed list; a joint
    the detector lacks has ``position`` null and confidence 0.
    """
    axes = "xyz"[: points.shape[1]]
    joints = []
    for name, point, score in zip(CANONICAL_JOINTS, _nested(points), _nested(confidence)):
        position = None if None in point else dict(zip(axes, point))
        joints.append({"name": name, "position": position, "confidence": score if position else 0.0})
    return joints


def _array(value) -> np.ndarray:
    """Array-like (nested lists with None, or an ndarray) -> float64 ndarray, None as NaN."""
    return np.asarray(value, dtype=float)


def _nested(value) -> list:
    """Array-like -> nested lists of floats rounded to ``DECIMALS``, NaN as None."""
    array = np.round(_array(value), DECIMALS)
    # tolist runs in C; the NaN-aware walk is ~10x slower, and a mesh is 20k numbers a frame.
    return codec.to_json_compatible(array) if np.isnan(array).any() else array.tolist()


def main(argv: list[str] | None = None) -> int:
    from outputs.report.page import read_messages

    parser = argparse.ArgumentParser(prog="python -m outputs.app_json", description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a DIR/<job>.jsonl file written by launch.py --out DIR")
    parser.add_argument("-o", "--output", type=Path, help="JSON file to write (default: RESULTS with .app.json)")
    parser.add_argument("--video-id", help="videoId to store (default: the job id)")
    parser.add_argument("--no-mesh", dest="include_mesh", action="store_false", help="leave out vertices and faces")
    args = parser.parse_args(argv)
    output = args.output or args.results.with_suffix(".app.json")
    try:
        write_app_json(read_messages(args.results), output, video_id=args.video_id, include_mesh=args.include_mesh)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or a job that cannot be stored as is
        print(f"python -m outputs.app_json: error: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
