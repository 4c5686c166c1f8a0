"""A plain IoU tracker: Hungarian matching of boxes to the previous frame's boxes.

Causal, no prediction, no filling: each frame comes out as soon as it goes in,
with only the people detected in it. It is the baseline the PHALP-style
tracker is measured against.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pose.detection import FrameDetections
from tracking.types import TrackedFrame, TrackedPerson


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) and b (M, 4), both x, y, w, h -> (N, M)."""
    ax0, ay0 = a[:, None, 0], a[:, None, 1]
    ax1, ay1 = ax0 + a[:, None, 2], ay0 + a[:, None, 3]
    bx0, by0 = b[None, :, 0], b[None, :, 1]
    bx1, by1 = bx0 + b[None, :, 2], by0 + b[None, :, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class IouTracker:
    def __init__(self, min_iou: float = 0.2, max_age: int = 30):
        self.min_iou = min_iou
        self.max_age = max_age
        self._boxes: dict[int, np.ndarray] = {}  # track id -> last box
        self._last_seen: dict[int, int] = {}
        self._next_id = 1
        self.changes: list = []

    def push(self, frame: FrameDetections) -> list[TrackedFrame]:
        for track_id in [t for t, seen in self._last_seen.items() if frame.index - seen > self.max_age]:
            del self._boxes[track_id], self._last_seen[track_id]
        ids = list(self._boxes)
        assigned: dict[int, int] = {}
        if ids and frame.people:
            iou = iou_matrix(np.stack([p.bbox for p in frame.people]), np.stack([self._boxes[t] for t in ids]))
            for row, col in zip(*linear_sum_assignment(-iou)):
                if iou[row, col] >= self.min_iou:
                    assigned[row] = ids[col]
        people = []
        for row, detection in enumerate(frame.people):
            track_id = assigned.get(row)
            if track_id is None:
                track_id, self._next_id = self._next_id, self._next_id + 1
            self._boxes[track_id] = detection.bbox
            self._last_seen[track_id] = frame.index
            people.append(TrackedPerson(track_id, "observed", float(detection.score), 0, detection, detection))
        return [TrackedFrame(frame.index, frame.pts_ms, people, frame.meta)]

    def finish(self) -> list[TrackedFrame]:
        return []
