"""What a detector reports about one person in one frame."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detection:
    bbox: np.ndarray  # (4,) float32: x, y, w, h in pixels
    score: float  # detector confidence in [0, 1]
    keypoints_2d: np.ndarray  # (J, 3) float32 canonical joints: x px, y px, confidence
    keypoints_3d: np.ndarray | None = None  # (J, 3) float32 metres, camera frame, with translation
    # Model-specific arrays passed through to the frame message unchanged
    # (e.g. HMR 2.0's "smpl", "camera", "vertices"; "appearance" for the tracker).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameDetections:
    """All detections of one frame, as the tracker receives them."""

    index: int
    pts_ms: float
    people: list[Detection]
    # What comes out with this frame's TrackedFrame, untouched by the tracker (the track stage's
    # "timestamps" and "detection_failed").
    meta: dict[str, Any] = field(default_factory=dict)


def in_source_pixels(d: Detection, source: tuple[int, int], detected: tuple[int, int]) -> Detection:
    """``d``, measured on a ``detected`` (width, height) copy of a ``source`` (width, height) image,
    in the source image's pixels.

    Pixel quantities scale by source / detected: ``bbox``, the x, y columns of
    ``keypoints_2d``, HMR 2.0's ``camera`` principal point, and its focal length by the
    ratio of the longer sides (``pose.camera.default_focal``), so that it equals the
    source's intrinsics. Metric ones (``keypoints_3d``, the camera translation, SMPL,
    vertices) stay: scaling an image scales focal length and principal point together,
    which leaves the 3D pose that projects onto it unchanged.
    """
    xy = np.float32(source) / np.float32(detected)
    keypoints_2d = d.keypoints_2d.copy()
    keypoints_2d[:, :2] *= xy
    extras = dict(d.extras)
    if "camera" in extras:
        camera = extras["camera"]
        extras["camera"] = {**camera, "focal_length": camera["focal_length"] * max(source) / max(detected),
                            "principal_point": np.float32(camera["principal_point"] * xy)}
    return Detection(bbox=np.float32(d.bbox * np.tile(xy, 2)), score=d.score, keypoints_2d=keypoints_2d,
                     keypoints_3d=d.keypoints_3d, extras=extras)
