"""BlazePose detections of a video, cached in /tmp so benches run the detector once.

The detections are ``detectors.blazepose.BlazePoseDetector``'s (video mode, its default model;
the largest person of each frame),
exactly what the pipeline's detect stage produces.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from detectors.base import FrameImage
from detectors.blazepose_models import DEFAULT_MODEL
from pose.detection import Detection, FrameDetections
from pose.skeleton import CANONICAL_JOINTS
from video.sources import open_source


def _run_blazepose(video: Path) -> dict[str, np.ndarray]:
    """Per frame: found (N,), bbox (N, 4), score (N,), keypoints_2d / keypoints_3d (N, J, 3); NaN if not found."""
    from detectors.blazepose import BlazePoseDetector

    source = open_source(str(video))
    detector = BlazePoseDetector(mode="video")
    J = len(CANONICAL_JOINTS)
    missing = (np.full(4, np.nan), np.nan, np.full((J, 3), np.nan), np.full((J, 3), np.nan))
    rows = []
    for index, pts_ms, image in source:
        people = detector.detect([FrameImage("bench", index, pts_ms, image)])[0]
        rows.append((people[0].bbox, people[0].score, people[0].keypoints_2d, people[0].keypoints_3d)
                    if people else None)
    detector.close()
    columns = list(zip(*[row if row is not None else missing for row in rows]))
    return {"found": np.array([row is not None for row in rows]), "bbox": np.stack(columns[0]),
            "score": np.array(columns[1]), "keypoints_2d": np.stack(columns[2]),
            "keypoints_3d": np.stack(columns[3]), "size": np.array([source.info.width, source.info.height]),
            "fps": np.array(source.info.fps)}


def blazepose_frames(video: Path) -> tuple[list[FrameDetections], tuple[int, int]]:
    """Detections of every frame of ``video`` (cached under /tmp) and the (width, height)."""
    key = hashlib.sha1(f"{video.resolve()}:{video.stat().st_size}:{DEFAULT_MODEL}".encode()).hexdigest()[:12]
    cache = Path("/tmp") / f"posebus_blazepose_v3_{key}.npz"
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
