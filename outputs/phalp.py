"""Tracked frames as PHALP's results ``.pkl`` (joblib), for tools that read PHALP output.

One dict per frame keyed by the frame path, in time order, with PHALP's keys
(docs: shared/notes/phalp.md §7): ``time``, ``shot``, ``frame_path`` and per
person lists aligned with ``tid``: ``bbox`` [x, y, w, h], ``tracked_time``,
``center``, ``scale``, ``size`` [H, W], ``img_path``, ``img_name``,
``class_name``, ``conf``, ``annotations``, ``extra_data``, ``smpl``,
``camera`` (3,), ``camera_bbox`` (3,), ``3d_joints`` (45, 3), ``2d_joints``
(90,), ``mask``; plus ``tracked_ids`` / ``tracked_bbox`` for people detected in
the frame.

Where the values differ from PHALP's, and why they are better:
- ``tracked_time``: 0 observed; for ``predicted`` and ``held`` frames the frames
  since the last observation (PHALP's ghost count); ``interpolated`` frames get
  −1, PHALP's mark for values filled from both sides by its post-processor.
- Ghost frames carry predicted or interpolated values (smpl slerped on SO(3),
  camera, joints, boxes), not a stale copy of the last detection, and ``conf`` is
  the tracker's decayed confidence, not the old detector score.
- ``extra_data`` = {"state", "frames_since_seen", "backfilled"}: the tracker's state by name; frames
  before anybody is first published hold the first person (``held``, ``backfilled`` true;
  ``outputs.backfill``), so every frame has one once anybody is seen in the job.
- Joints a detector does not have are NaN, never invented; ``smpl`` is None
  for detectors without SMPL (e.g. BlazePose) and ``camera`` then comes from the
  3D hips.
- ``mask`` is the person box as a COCO RLE (no segmentation model runs here), so
  readers that decode masks keep working.
- ``center``/``scale`` use the box padded to the 192:256 aspect ratio of HMR 2.0's
  crop (``expand_to_aspect``), the same rule as 4D-Humans' PHALP.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import joblib
import numpy as np

from outputs.backfill import hold_first_person
from pose.camera import default_focal
from pose.detection import Detection
from pose.skeleton import HMR2_JOINTS, HMR2_TO_CANONICAL
from tracking.distances import body_position
from tracking.types import TrackedFrame, TrackedPerson

PHALP_JOINTS = len(HMR2_JOINTS) + 1  # HMR 2.0's 44 and PHALP's extra row (2D: the projected root)
CROP_ASPECT = 192 / 256  # width / height of HMR 2.0's crop
TRACKED_TIME_INTERPOLATED = -1


def expand_to_aspect(bbox: np.ndarray, aspect: float = CROP_ASPECT) -> np.ndarray:
    """Box (4,) x, y, w, h grown around its centre to width/height = aspect -> (4,)."""
    x, y, w, h = (float(v) for v in bbox)
    w_pad, h_pad = max(w, h * aspect), max(h, w / aspect)
    return np.array([x + (w - w_pad) / 2, y + (h - h_pad) / 2, w_pad, h_pad])


def canonical_to_phalp(points: np.ndarray) -> np.ndarray:
    """Canonical joints (J, D) -> PHALP's (45, D): HMR 2.0 order, NaN where no canonical joint maps."""
    out = np.full((PHALP_JOINTS, points.shape[1]), np.nan)
    for canonical, sources in enumerate(HMR2_TO_CANONICAL):
        if len(sources) == 1:
            out[sources[0]] = points[canonical]
    return out


def crop_camera(translation: np.ndarray, padded_box: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
    """Full-image translation (3,) -> HMR 2.0's weak-perspective crop camera [s, tx, ty] (3,).

    Inverse of hmr2 ``cam_crop_to_full``: tz = 2f / (b·s), tx_full = tx + 2(cx − W/2) / (b·s),
    with b the padded box side and (cx, cy) its centre.
    """
    x, y, w, h = padded_box
    side, cx, cy = max(w, h), x + w / 2, y + h / 2
    bs = 2 * focal / translation[2]  # = b · s
    return np.array([bs / side, translation[0] - 2 * (cx - width / 2) / bs,
                     translation[1] - 2 * (cy - height / 2) / bs])


def box_rle(bbox: np.ndarray, width: int, height: int) -> dict:
    """The box as a COCO compressed RLE {'size': [H, W], 'counts': str} (column-major runs, 0s first)."""
    x0, y0 = int(np.clip(round(bbox[0]), 0, width)), int(np.clip(round(bbox[1]), 0, height))
    x1 = int(np.clip(round(bbox[0] + bbox[2]), x0, width))
    y1 = int(np.clip(round(bbox[1] + bbox[3]), y0, height))
    runs = [x0 * height + y0]
    for _ in range(x0, x1):
        runs += [y1 - y0, height - (y1 - y0)]
    if x1 > x0:
        runs[-1] = height * width - sum(runs[:-1])
    else:
        runs = [height * width]
    return {"size": [height, width], "counts": _rle_string(runs)}


def _rle_string(runs: list[int]) -> str:
    """pycocotools' ``rleToString``: runs as deltas to the run two back, 5 bits per char with a continue bit."""
    chars = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = value & 0x1F
            value >>= 5
            more = value != -1 if c & 0x10 else value != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return "".join(chars)


def _smpl(d: Detection) -> dict | None:
    smpl = d.extras.get("smpl")
    if smpl is None:
        return None
    return {key: np.asarray(smpl[key], dtype=np.float32) for key in ("global_orient", "body_pose", "betas")}


def _camera(d: Detection) -> np.ndarray:
    position = body_position(d)
    return np.full(3, np.nan, dtype=np.float32) if position is None else position.astype(np.float32)


def _joints_3d(d: Detection, translation: np.ndarray) -> np.ndarray:
    """(45, 3) PHALP 3D joints without translation, last row zero.

    HMR 2.0's native 44 (its own output, already without translation) when present,
    else the canonical camera-frame keypoints minus the body translation.
    """
    native = d.extras.get("keypoints_3d_native")
    if native is not None and len(native) == len(HMR2_JOINTS):
        body = np.asarray(native, dtype=np.float64)
    elif d.keypoints_3d is not None:
        body = canonical_to_phalp(d.keypoints_3d)[:-1] - translation
    else:
        body = np.full((len(HMR2_JOINTS), 3), np.nan)
    return np.vstack([body, np.zeros((1, 3))]).astype(np.float32)


def _joints_2d(d: Detection, translation: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
    """(90,) PHALP 2D joints, normalised by the padded square: v = (px + pad) / max(W, H)."""
    side = max(width, height)
    pad = np.array([(side - width) // 2, (side - height) // 2])
    points = canonical_to_phalp(d.keypoints_2d[:, :2])
    if np.isfinite(translation).all() and translation[2] > 0:
        points[-1] = focal * translation[:2] / translation[2] + (width / 2, height / 2)
    return ((points + pad) / side).astype(np.float32).ravel()


def person_record(p: TrackedPerson, width: int, height: int, focal: float) -> dict:
    """PHALP's per-person values (without the frame-level keys)."""
    d = p.detection
    padded = expand_to_aspect(d.bbox)
    translation = _camera(d)
    tracked_time = TRACKED_TIME_INTERPOLATED if p.state == "interpolated" else p.frames_since_seen
    return {
        "tid": p.track_id,
        "bbox": np.asarray(d.bbox, dtype=np.float32),
        "tracked_time": tracked_time,
        "center": (padded[:2] + padded[2:] / 2).astype(np.float32),
        "scale": float(padded[2:].max() / max(width, height)),
        "conf": float(p.confidence),
        "extra_data": {"state": p.state, "frames_since_seen": p.frames_since_seen,
                       "backfilled": bool(d.extras.get("backfilled", False))},
        "smpl": _smpl(d),
        "camera": translation,
        "camera_bbox": crop_camera(translation, padded, focal, width, height).astype(np.float32),
        "3d_joints": _joints_3d(d, translation),
        "2d_joints": _joints_2d(d, translation, focal, width, height),
        "mask": [box_rle(d.bbox, width, height)],
    }


_PER_PERSON = ("tid", "bbox", "tracked_time", "center", "scale", "conf", "extra_data", "smpl", "camera",
               "camera_bbox", "3d_joints", "2d_joints", "mask")


def phalp_results(frames: Sequence[TrackedFrame], width: int, height: int, frame_dir: str = "img",
                  shots: Sequence[int] | None = None, focal: float | None = None) -> dict[str, dict]:
    """{frame path: PHALP frame dict} in time order.

    frame_dir: folder used in the frame paths (``{frame_dir}/{index+1:06d}.jpg``, PHALP's 1-based names);
    shots: per-frame shot number (0 when not given); focal: px, default HMR 2.0's ``5000/256·max(W, H)``.
    """
    focal = default_focal(width, height) if focal is None else focal
    results = {}
    for position, frame in enumerate(frames):
        name = f"{frame.index + 1:06d}.jpg"
        path = str(Path(frame_dir) / name)
        people = [person_record(p, width, height, focal) for p in frame.people]
        record = {"time": position, "shot": shots[position] if shots is not None else 0, "frame_path": path}
        record.update({key: [person[key] for person in people] for key in _PER_PERSON})
        observed = [p for p in frame.people if p.state == "observed"]
        record.update({
            "tracked_ids": [p.track_id for p in observed],
            "tracked_bbox": [np.asarray(p.detection.bbox, dtype=np.float32) for p in observed],
            "size": [[height, width] for _ in people],
            "img_path": [path for _ in people],
            "img_name": [name for _ in people],
            "class_name": [0 for _ in people],
            "annotations": [[] for _ in people],
        })
        results[path] = record
    return results


def tracked_frames(messages: list[dict]) -> list[TrackedFrame]:
    """A job's published ``frame`` messages back as the tracker's frames (the values published, float32), the
    frames before anybody is published holding the first person (``outputs.backfill``)."""
    return [TrackedFrame(m["index"], m["pts_ms"], [
        TrackedPerson(p["track_id"], p["state"], p["confidence"], p["frames_since_seen"], Detection(
            bbox=p["bbox"], score=p["confidence"], keypoints_2d=p["keypoints_2d"], keypoints_3d=p["keypoints_3d"],
            extras={key: p[key] for key in ("smpl", "camera", "keypoints_3d_native", "backfilled") if key in p}))
        for p in m["people"]]) for m in hold_first_person([m for m in messages if m["type"] == "frame"])]


def write_phalp(messages: list[dict], path: str | Path) -> Path:
    """PHALP's results file of a job's published messages (its job_start first)."""
    start = messages[0]
    return write_phalp_pkl(path, tracked_frames(messages), start["width"], start["height"])


def write_phalp_pkl(path: str | Path, frames: Sequence[TrackedFrame], width: int, height: int, **options) -> Path:
    """Write ``phalp_results(frames, width, height, **options)`` with joblib (compress=3, like PHALP)."""
    path = Path(path)
    joblib.dump(phalp_results(frames, width, height, **options), path, compress=3)
    return path
