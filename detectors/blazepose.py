"""MediaPipe BlazePose on the Tasks API (``PoseLandmarker``), the embedded CPU default.

The model bundle (lite, full or heavy) comes from ``detectors.blazepose_models``.
BlazePose gives, per person, 33 landmarks in image coordinates and in metres
(hip-centred, camera-aligned axes). We map both into the canonical skeleton and
recover the body's translation by fitting the metric pose to the 2D landmarks
under the shared intrinsics (``pose.camera``).

Two layers:

- ``PoseFinder`` / ``find_poses``: the pure primitive. The landmarker on any image
  (a full frame, a crop, a rotated crop, a tile), IMAGE mode: every pose found, as
  ``Pose`` (landmarks in that image's pixels, world landmarks, a score). Nothing
  about frames, jobs or the canonical skeleton.
- ``BlazePoseDetector``: the posebus ``Detector``. Modes:
  - ``video`` (default): the landmarker's VIDEO mode, which tracks each pose from
    the previous frame's landmarks and runs the person detector only while fewer
    than ``num_poses`` people are tracked. It assumes consecutive frames; with
    several workers each sees every N-th frame, so one landmarker is kept across
    gaps of up to ``max_gap`` frames and a fresh one starts after larger gaps or
    at a new job. Jobs that run side by side interleave their frames in a worker:
    each job has its landmarker (``Following``; the most recent ``MAX_JOBS_FOLLOWED``).
  - ``static``: every frame detected from scratch (IMAGE mode; order-independent).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from detectors import register
from detectors.base import FrameImage
from detectors.blazepose_models import DEFAULT_MODEL, MODELS, ensure
from options import Option, positive_int
from options.groups import FOV, SECOND_LOOK
from pose import camera
from pose.detection import Detection
from pose.skeleton import BLAZEPOSE_TO_CANONICAL, available, to_canonical
from video.native import quiet_native_stderr

# Keep MediaPipe's and LiteRT's C++ chatter out of the service's own logs.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BOX_MARGIN = 0.1  # fraction of the landmark extent added on each side
NUM_POSES = 4  # a rider and a few bystanders


@dataclass
class Pose:
    """One person as BlazePose sees them in one image (33 BlazePose landmarks, ``pose.skeleton.BLAZEPOSE_JOINTS``)."""

    image: np.ndarray  # (33, 4) float32: x px, y px (that image's pixels), visibility, presence, each in [0, 1]
    world: np.ndarray  # (33, 3) float32: metres, origin between the hips, x right, y down, z away from the camera
    score: float  # mean landmark visibility, in [0, 1]

    def box(self, width: int, height: int, margin: float = BOX_MARGIN) -> np.ndarray:
        """(4,) x, y, w, h around the landmarks, widened by ``margin``, clipped to a ``width`` × ``height`` image."""
        return landmark_box(self.image[:, :2], width, height, margin)


def landmark_box(pixels: np.ndarray, width: int, height: int, margin: float = BOX_MARGIN) -> np.ndarray:
    """Box around landmarks (N, 2) px, widened by ``margin`` and clipped to the image -> (4,) x, y, w, h."""
    lo, hi = pixels.min(axis=0), pixels.max(axis=0)
    pad = (hi - lo) * margin
    lo = np.clip(lo - pad, 0, [width, height])
    hi = np.clip(hi + pad, 0, [width, height])
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], dtype=np.float32)


def create_landmarker(model: str = DEFAULT_MODEL, video: bool = False, num_poses: int = NUM_POSES,
                      min_confidence: float = 0.5):
    """A MediaPipe ``PoseLandmarker`` on the cached bundle of ``model`` (IMAGE or VIDEO running mode).

    ``min_confidence`` is the person detector's threshold (and the pose presence and tracking ones)."""
    from mediapipe.tasks.python import BaseOptions, vision  # only workers that run BlazePose pay for it

    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(ensure(model))),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_poses=num_poses, min_pose_detection_confidence=min_confidence,
        min_pose_presence_confidence=min_confidence, min_tracking_confidence=min_confidence)
    with quiet_native_stderr():  # set-up notices
        return vision.PoseLandmarker.create_from_options(options)


def poses_of(result, width: int, height: int) -> list[Pose]:
    """A ``PoseLandmarkerResult`` on a ``width`` × ``height`` image -> its poses."""
    poses = []
    for image_lm, world_lm in zip(result.pose_landmarks, result.pose_world_landmarks):
        image = np.array([(p.x * width, p.y * height, p.visibility or 0.0, p.presence or 0.0) for p in image_lm],
                         np.float32)
        world = np.array([(p.x, p.y, p.z) for p in world_lm], np.float32)
        poses.append(Pose(image, world, float(image[:, 2].mean())))
    return poses


def _mp_image(image: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))


def find_poses(landmarker, image: np.ndarray) -> list[Pose]:
    """Every pose an IMAGE-mode landmarker finds in ``image`` ((H, W, 3) uint8 BGR, any size)."""
    height, width = image.shape[:2]
    return poses_of(landmarker.detect(_mp_image(image)), width, height)


class PoseFinder:
    """BlazePose on arbitrary images, each on its own (IMAGE mode): ``finder(image) -> list[Pose]``.

    The primitive for anything that looks again at parts of a frame (crops, rotated
    crops, tiles): landmarks come back in the pixels of the image given; map them
    back to the frame yourself.
    """

    def __init__(self, model: str = DEFAULT_MODEL, num_poses: int = NUM_POSES, min_confidence: float = 0.5):
        self._landmarker = create_landmarker(model, video=False, num_poses=num_poses, min_confidence=min_confidence)
        self._used = False

    def __call__(self, image: np.ndarray) -> list[Pose]:
        if self._used:
            return find_poses(self._landmarker, image)
        self._used = True
        with quiet_native_stderr():  # a landmarker's first image logs notices on memory alignment and ROIs
            return find_poses(self._landmarker, image)

    def close(self) -> None:
        with quiet_native_stderr():
            self._landmarker.close()


def pose_detection(pose: Pose, width: int, height: int, fov: float | None = None) -> Detection:
    """A pose in a ``width`` × ``height`` frame -> a Detection: canonical joints, metric 3D placed in the camera
    frame by the translation that projects it onto its 2D landmarks (``pose.camera.fit_translation``) under
    the full-image focal (``pose.camera.image_focal``: ``fov`` degrees across the longer side, else HMR 2.0's)."""
    keypoints_2d = to_canonical(pose.image[:, :3].astype(np.float64), BLAZEPOSE_TO_CANONICAL)
    relative_3d = to_canonical(pose.world.astype(np.float64), BLAZEPOSE_TO_CANONICAL)
    present = available(relative_3d)
    K = camera.intrinsics(width, height, camera.image_focal(width, height, fov))
    translation = camera.fit_translation(relative_3d[present], keypoints_2d[present, :2], keypoints_2d[present, 2], K)
    keypoints_2d[~present, 2] = 0.0
    return Detection(bbox=pose.box(width, height), score=pose.score, keypoints_2d=keypoints_2d.astype(np.float32),
                     keypoints_3d=(relative_3d + translation).astype(np.float32))


def largest_first(detections: list[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: -float(d.bbox[2] * d.bbox[3]))


MAX_JOBS_FOLLOWED = 8  # jobs whose VIDEO landmarker a worker keeps (each holds ~100 MB)
FOLLOW_IDLE_S = 30.0  # a job with no frame here for this long has ended (or another worker has it)


@dataclass
class Following:
    """One job's VIDEO-mode landmarker in a worker, and what it knows of the job's previous frames."""

    landmarker: object = None
    people: int = 0  # its num_poses
    seen: int = 0  # poses it gave on the previous frame
    fewer: int = 0  # censuses in a row that wanted fewer than it follows
    last: tuple[int, int] | None = None  # (index, timestamp ms) of the job's previous frame here
    census_index: int = 0
    used: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        if self.landmarker is not None:
            with quiet_native_stderr():  # tear-down notices
                self.landmarker.close()
            self.landmarker = None


class BlazePoseDetector:
    """The posebus Detector (see the module docstring for the modes).

    Video mode sizes its landmarker to the people in view. A VIDEO-mode landmarker
    runs its person detector on every frame while it tracks fewer than ``num_poses``
    people, which on one person costs as much again as the landmarks (bench.blazepose);
    so a *census*, an IMAGE-mode look at the whole frame every ``census_every`` frames
    (and at every fresh start), counts the people, and the VIDEO landmarker follows
    that many (at most ``num_poses``): it is made again at once when more people
    appear, and after ``shrink_after`` censuses in a row that saw fewer. While it
    follows fewer people than it should (someone lost, nobody yet), its own detector
    looks on every frame; a person beyond those it follows (a second one walking in)
    is found at the next census, within ``census_every`` frames (a second at 30 fps).
    A census costs about what one IMAGE-mode frame does (~29 ms CPU with the full model).
    """

    name = "blazepose"

    def __init__(self, mode: str = "video", model: str = DEFAULT_MODEL, num_poses: int = NUM_POSES,
                 max_gap: int = 4, fov: float | None = None, min_confidence: float = 0.5,
                 census_every: int = 30, shrink_after: int = 3):
        if mode not in ("video", "static"):
            raise ValueError(f"BlazePose mode must be video or static, not {mode!r}")
        if num_poses < 1:
            raise ValueError(f"BlazePose num_poses must be at least 1, not {num_poses}")
        ensure(model)  # fail (or fetch) now, not on the first frame
        self.mode, self.model, self.num_poses = mode, model, num_poses
        self.max_gap = max_gap
        self.fov = fov  # degrees across the longer side; None: HMR 2.0's focal rule
        self.min_confidence = min_confidence
        self.census_every, self.shrink_after = census_every, shrink_after
        self._finder: PoseFinder | None = None  # IMAGE mode: static frames and the census
        self._jobs: OrderedDict[str, Following] = OrderedDict()  # VIDEO mode, per job, most recent last

    def detect(self, frames: Sequence[FrameImage]) -> list[list[Detection]]:
        return [self._detect_one(frame) for frame in frames]

    def image_focal(self, width: int, height: int) -> float:
        """The full-image focal length (pixels) its 3D poses are placed with."""
        return camera.image_focal(width, height, self.fov)

    def _find(self, image: np.ndarray) -> list[Pose]:
        if self._finder is None:
            self._finder = PoseFinder(self.model, self.num_poses, self.min_confidence)
        return self._finder(image)

    def _following(self, job: str) -> Following:
        """``job``'s VIDEO-mode state (a new one for a job not seen lately)."""
        following = self._jobs.pop(job, None) or Following()
        following.used = time.monotonic()
        self._jobs[job] = following
        oldest = next(iter(self._jobs.values()))
        while len(self._jobs) > MAX_JOBS_FOLLOWED or following.used - oldest.used > FOLLOW_IDLE_S:
            self._jobs.popitem(last=False)[1].close()
            oldest = next(iter(self._jobs.values()))
        return following

    def _continues(self, following: Following, frame: FrameImage) -> bool:
        """Whether ``frame`` follows its job's previous one closely enough for VIDEO mode's tracking."""
        return following.last is not None and 0 < frame.index - following.last[0] <= self.max_gap

    def _follow(self, following: Following, people: int) -> None:
        """A fresh VIDEO-mode landmarker following ``people`` poses."""
        following.close()
        following.landmarker = create_landmarker(self.model, True, people, self.min_confidence)
        following.people, following.fewer, following.last = people, 0, None

    def _census(self, following: Following, frame: FrameImage, fresh: bool) -> None:
        """Count the people in ``frame`` and resize the VIDEO landmarker if it follows the wrong number."""
        following.census_index = frame.index
        wanted = min(max(len(self._find(frame.image)), 0 if fresh else following.seen, 1), self.num_poses)
        if fresh or wanted > following.people:
            self._follow(following, wanted)
        elif wanted < following.people:
            following.fewer += 1
            if following.fewer >= self.shrink_after:
                self._follow(following, wanted)
        else:
            following.fewer = 0

    def _track(self, frame: FrameImage) -> list[Pose]:
        following = self._following(frame.job)
        fresh = following.landmarker is None or not self._continues(following, frame)
        if fresh or frame.index - following.census_index >= self.census_every:
            self._census(following, frame, fresh)
        # VIDEO mode needs strictly increasing integer milliseconds within one landmarker.
        timestamp = int(round(frame.pts_ms))
        if following.last is not None:
            timestamp = max(timestamp, following.last[1] + 1)
        first, following.last = following.last is None, (frame.index, timestamp)
        with quiet_native_stderr() if first else contextlib.nullcontext():  # first frame: the same notices
            result = following.landmarker.detect_for_video(_mp_image(frame.image), timestamp)
        poses = poses_of(result, frame.image.shape[1], frame.image.shape[0])
        following.seen = len(poses)
        return poses

    def poses(self, frame: FrameImage) -> list[Pose]:
        """The poses of one frame, as BlazePose gives them (``detect`` maps them to Detections)."""
        return self._find(frame.image) if self.mode == "static" else self._track(frame)

    def _detect_one(self, frame: FrameImage) -> list[Detection]:
        height, width = frame.image.shape[:2]
        return largest_first([pose_detection(pose, width, height, self.fov) for pose in self.poses(frame)])

    def close(self) -> None:
        while self._jobs:
            self._jobs.popitem()[1].close()
        if self._finder is not None:
            self._finder.close()
            self._finder = None


def _detector(mode: str, model: str, num_poses: int, second_look: bool, fov: float | None):
    detector = BlazePoseDetector(mode=mode, model=model, num_poses=num_poses, fov=fov)
    if not second_look:
        return detector
    from detectors.second_look import with_second_look  # it builds on this module

    return with_second_look(detector)


register("blazepose", _detector,
         Option("--blazepose-mode", "video: MediaPipe tracking across each worker's frames; static: every frame alone",
                default="video", choices=("video", "static"), param="mode"),
         Option("--blazepose-model", "BlazePose landmark model (default %(default)s; bundles: "
                                     "python -m detectors.blazepose_models status)",
                default=DEFAULT_MODEL, choices=MODELS, param="model"),
         Option("--num-poses", "BlazePose: most people per frame (default %(default)s)", positive_int, NUM_POSES,
                metavar="N"),
         FOV,
         SECOND_LOOK)
