"""A cheap appearance descriptor for detectors that give none (BlazePose).

The stage has the frame when it receives detections; it can put
``colour_descriptor(image, bbox)`` into ``extras["appearance"]`` and the
tracker's appearance distance uses it like a learned embedding.
"""
from __future__ import annotations

import cv2
import numpy as np

HUE_BINS, SATURATION_BINS = 8, 4


def torso_region(bbox: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The middle of a person box (x0, y0, x1, y1) px: clothing, little background. bbox (4,) x, y, w, h."""
    x, y, w, h = (float(v) for v in bbox)
    x0, x1 = int(np.clip(x + 0.25 * w, 0, width)), int(np.clip(x + 0.75 * w, 0, width))
    y0, y1 = int(np.clip(y + 0.2 * h, 0, height)), int(np.clip(y + 0.6 * h, 0, height))
    return x0, y0, x1, y1


def colour_descriptor(image: np.ndarray, bbox: np.ndarray) -> np.ndarray | None:
    """Hue × saturation histogram of the torso region, L2-normalised.

    image: (H, W, 3) uint8 BGR; bbox (4,) x, y, w, h px. Returns (HUE_BINS·SATURATION_BINS,)
    float32, or None when the region is empty.
    """
    x0, y0, x1, y1 = torso_region(bbox, image.shape[1], image.shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_BGR2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256]).ravel()
    norm = np.linalg.norm(histogram)
    return (histogram / norm).astype(np.float32) if norm > 0 else None
