"""BlazePose detections of a video, cached in /tmp so benches run it once.

A small stand-in for ``detectors/blazepose.py`` (not merged into this branch
yet): same model (mediapipe 0.10.14, ``model_complexity=1``, video mode), same
mapping to canonical joints and the same translation fit.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from pose import camera
from pose.detection import Detection, FrameDetections
from pose.skeleton import BLAZEPOSE_TO_CANONICAL, CANONICAL_JOINTS, available, to_canonical

BOX_MARGIN = 0.1


def _run_blazepose(video: Path) -> dict[str, np.ndarray]:
    """Per frame: found (N,), bbox (N, 4), score (N,), keypoints_2d / keypoints_3d (N, J, 3); NaN if not found."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import mediapipe as mp

    capture = cv2.VideoCapture(str(video))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    K = camera.intrinsics(width, height)
    rows = []
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1) as pose:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            result = pose.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if result.pose_landmarks is None:
                rows.append(None)
                continue
            image_lm = np.array([(p.x * width, p.y * height, p.visibility) for p in result.pose_landmarks.landmark])
            world_lm = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark])
            keypoints_2d = to_canonical(image_lm, BLAZEPOSE_TO_CANONICAL)
            relative_3d = to_canonical(world_lm, BLAZEPOSE_TO_CANONICAL)
            present = available(relative_3d)
            translation = camera.fit_translation(relative_3d[present], keypoints_2d[present, :2],
                                                 keypoints_2d[present, 2], K)
            keypoints_2d[~present, 2] = 0.0
            lo, hi = image_lm[:, :2].min(axis=0), image_lm[:, :2].max(axis=0)
            pad = (hi - lo) * BOX_MARGIN
            lo, hi = np.clip(lo - pad, 0, [width, height]), np.clip(hi + pad, 0, [width, height])
            rows.append((np.r_[lo, hi - lo], image_lm[:, 2].mean(), keypoints_2d, relative_3d + translation))
    J = len(CANONICAL_JOINTS)
    nan = (np.full(4, np.nan), np.nan, np.full((J, 3), np.nan), np.full((J, 3), np.nan))
    columns = list(zip(*[row if row is not None else nan for row in rows]))
    return {"found": np.array([row is not None for row in rows]), "bbox": np.stack(columns[0]),
            "score": np.array(columns[1]), "keypoints_2d": np.stack(columns[2]),
            "keypoints_3d": np.stack(columns[3]), "size": np.array([width, height]),
            "fps": np.array(capture.get(cv2.CAP_PROP_FPS))}


def blazepose_frames(video: Path) -> tuple[list[FrameDetections], tuple[int, int]]:
    """Detections of every frame of ``video`` (cached under /tmp) and the (width, height)."""
    key = hashlib.sha1(f"{video.resolve()}:{video.stat().st_size}".encode()).hexdigest()[:12]
    cache = Path("/tmp") / f"posebus_blazepose_{key}.npz"
    if not cache.exists():
        np.savez(cache, **_run_blazepose(video))
    data = np.load(cache)
    frame_ms = 1000.0 / float(data["fps"])
    frames = []
    for i, found in enumerate(data["found"]):
        people = [Detection(bbox=data["bbox"][i].astype(np.float32), score=float(data["score"][i]),
                            keypoints_2d=data["keypoints_2d"][i].astype(np.float32),
                            keypoints_3d=data["keypoints_3d"][i].astype(np.float32))] if found else []
        frames.append(FrameDetections(i, i * frame_ms, people))
    return frames, (int(data["size"][0]), int(data["size"][1]))


if __name__ == "__main__":
    import sys
    frames, size = blazepose_frames(Path(sys.argv[1]))
    print(len(frames), size, sum(bool(f.people) for f in frames))
