"""MediaPipe BlazePose (``mediapipe==0.10.14``, ``model_complexity=1``), the embedded default.

That version and level is the only one whose model ships inside the wheel and
runs offline. BlazePose is single-person; it gives 33 landmarks in image
coordinates and in metres (hip-centred, camera-aligned axes). We map both into
the canonical skeleton and recover the body's translation by fitting the metric
pose to the 2D landmarks under the shared intrinsics (``pose.camera``).

Modes:
- ``video`` (default): MediaPipe's tracking mode, which re-uses the previous
  frame's landmarks as the region of interest. It assumes consecutive frames;
  with several workers each one sees every N-th frame, so the tracker is kept
  across gaps of up to ``max_gap`` frames and restarted after larger gaps or at
  a new job. bench/pipeline.py measures the speed and agreement of both modes.
- ``static``: every frame detected from scratch (slower, order-independent).
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

import cv2
import numpy as np

from detectors import register
from detectors.base import FrameImage
from options import Option
from pose import camera
from pose.detection import Detection
from pose.skeleton import BLAZEPOSE_TO_CANONICAL, available, to_canonical
from video.native import quiet_native_stderr

# Keep MediaPipe's C++ and protobuf chatter out of the service's own logs.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", module="google.protobuf")

BOX_MARGIN = 0.1  # fraction of the landmark extent added on each side


def landmark_box(pixels: np.ndarray, width: int, height: int, margin: float = BOX_MARGIN) -> np.ndarray:
    """Box around landmarks (N, 2) px, widened by ``margin`` and clipped to the image -> (4,) x, y, w, h."""
    lo, hi = pixels.min(axis=0), pixels.max(axis=0)
    pad = (hi - lo) * margin
    lo = np.clip(lo - pad, 0, [width, height])
    hi = np.clip(hi + pad, 0, [width, height])
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], dtype=np.float32)


class BlazePoseDetector:
    name = "blazepose"

    def __init__(self, mode: str = "video", max_gap: int = 4, focal: float | None = None,
                 min_confidence: float = 0.5):
        if mode not in ("video", "static"):
            raise ValueError(f"BlazePose mode must be video or static, not {mode!r}")
        import mediapipe as mp  # imported here: only workers that run BlazePose pay for it

        self._solution = mp.solutions.pose
        self.mode = mode
        self.max_gap = max_gap
        self.focal = focal
        self.min_confidence = min_confidence  # MediaPipe's person-detection threshold
        self._pose = None
        self._last: tuple[str, int] | None = None  # (job, index) of the previous frame

    def detect(self, frames: Sequence[FrameImage]) -> list[list[Detection]]:
        return [self._detect_one(frame) for frame in frames]

    def _graph_for(self, frame: FrameImage) -> tuple[object, bool]:
        """The MediaPipe graph to run ``frame`` on, and whether it was just built."""
        continuous = (
            self.mode == "video" and self._last is not None and self._last[0] == frame.job
            and 0 < frame.index - self._last[1] <= self.max_gap
        )
        fresh = self._pose is None or (self.mode == "video" and not continuous)
        if fresh:
            self.close()
            self._pose = self._solution.Pose(static_image_mode=self.mode == "static", model_complexity=1,
                                             min_detection_confidence=self.min_confidence)
        self._last = (frame.job, frame.index)
        return self._pose, fresh

    def _detect_one(self, frame: FrameImage) -> list[Detection]:
        height, width = frame.image.shape[:2]
        graph, fresh = self._graph_for(frame)
        rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
        if fresh:  # a new graph logs its set-up on the first frame
            with quiet_native_stderr():
                result = graph.process(rgb)
        else:
            result = graph.process(rgb)
        if result.pose_landmarks is None:
            return []
        image_lm = np.array([(p.x * width, p.y * height, p.visibility) for p in result.pose_landmarks.landmark])
        world_lm = np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark])
        keypoints_2d = to_canonical(image_lm, BLAZEPOSE_TO_CANONICAL)
        relative_3d = to_canonical(world_lm, BLAZEPOSE_TO_CANONICAL)
        present = available(relative_3d)
        K = camera.intrinsics(width, height, self.focal)
        translation = camera.fit_translation(relative_3d[present], keypoints_2d[present, :2],
                                             keypoints_2d[present, 2], K)
        keypoints_2d[~present, 2] = 0.0
        return [Detection(
            bbox=landmark_box(image_lm[:, :2], width, height),
            score=float(image_lm[:, 2].mean()),
            keypoints_2d=keypoints_2d,
            keypoints_3d=(relative_3d + translation).astype(np.float32),
        )]

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None


register("blazepose", BlazePoseDetector,
         Option("--blazepose-mode", "video: MediaPipe tracking across each worker's frames; static: every frame alone",
                default="video", choices=("video", "static"), param="mode"))
