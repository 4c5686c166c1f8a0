"""The interface every detector backend implements; it knows nothing of sockets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from pose.detection import Detection


@dataclass
class FrameImage:
    job: str
    index: int  # 0-based frame index within the job
    pts_ms: float
    image: np.ndarray  # (H, W, 3) uint8, BGR


class Detector(Protocol):
    name: str

    def detect(self, frames: Sequence[FrameImage]) -> list[list[Detection]]:
        """People in each frame, keypoints mapped to the canonical skeleton.

        Frames arrive in increasing index order per job, possibly with gaps (other
        workers take the frames in between); a detector may batch them.
        """
        ...

    def close(self) -> None: ...
