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
    detection_failed: bool = False
