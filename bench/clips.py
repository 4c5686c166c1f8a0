"""Video files the benches and tests make: MJPEG in AVI, which decodes exactly as it was written, frame for frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from video.sources import open_source


def write_video(path: Path, images: list[np.ndarray], fps: float = 30.0) -> Path:
    """(H, W, 3) uint8 BGR images -> an MJPEG AVI at a constant ``fps``."""
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for image in images:
        writer.write(image)
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every decoded frame, (H, W, 3) uint8 BGR."""
    return [image for _, _, image in open_source(str(path))]
