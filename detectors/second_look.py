"""A second look where the rider is expected, and a closer look at frames where nobody is found.

A full-frame pose detector sees a 640×360 frame at 224×224: a rider in the air,
upside down, or 40 px tall in a drone shot is often not found at all. ``SecondLook``
keeps, per job, where the person it follows was last seen (and how fast they moved),
and on a frame where no plausible detection is there:

- looks at a square crop around the expected box, scaled so the body fills the model's
  input, upright and then turned by 180°, 90° and 270° (an inverted or tumbling body),
  keeping the first plausible pose of the expected size near the expected place, mapped
  back to frame coordinates; when none of those finds them, a wider view (``REACQUIRE``
  times the crop) upright and turned over: a small rider falling or flipping leaves the
  place their last sighting predicts, and the landmarker often finds a small body in a
  wider view that it misses close up;
- one detection per person: overlapping ones (two poses on one body) keep the best;
- a pose lying on its side is seen again in an upright square view of its box, and the pose found
  there (inside that box) replaces it: the detector's VIDEO mode turns its view to the body it
  followed on the previous frame, so a small upright rider once taken for a body lying across
  the snow (a tiny head, hips far off to one side) stays lying until a fresh, upright look;
- when nobody plausible is in the frame at all, searches it in overlapping tiles (a
  2×2 and a 3×3 grid), at most every ``search_every`` frames; a pose found there counts
  when a second, square view centred on it finds it again (closer, else at the tile's
  scale; poses on objects rarely survive), and the largest is followed from then on.

Every detection, the full frame's and its own, passes ``pose.plausibility`` first: a pose
on an object never starts or feeds a track. The component is pure (no sockets): the
detect worker runs it on each frame after its detector (``SecondLookDetector``), so the
track stage needs nothing new. State is per job inside one worker: with several workers
each sees every N-th frame of a job, so its expectation spans N frames (the motion
model is linear; the crop grows with the frames since the person was seen).

The pose model is any ``finder(image) -> list[Pose]`` (``detectors.blazepose.PoseFinder``:
BlazePose in IMAGE mode on an arbitrary image).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from detectors.base import Detector, FrameImage
from detectors.blazepose import MAX_JOBS_FOLLOWED, BlazePoseDetector, Pose, PoseFinder, pose_detection
from pose.detection import Detection
from pose.plausibility import DEFAULT as PLAUSIBLE, TORSO, Plausibility

Finder = Callable[[np.ndarray], list[Pose]]

VIEW_SIDE = 256  # px: the landmark model's input; a crop is scaled to it
ROTATIONS = (0, 180, 90, 270)  # degrees, in the order they are tried
CROP_JITTER = (1.25, 0.8)  # the other crop sizes tried, relative, one a frame in turn
REACQUIRE = 2.4  # the wider view's size, relative to the crop (6 body sizes): the last resort of a look around


@dataclass(frozen=True)
class View:
    """A window of a frame as the pose model sees it: ``matrix`` maps frame px to view px
    (a crop, a scale and a rotation by ``rotation`` degrees counter-clockwise), ``size`` = (width, height)."""

    matrix: np.ndarray  # (2, 3) float
    size: tuple[int, int]
    rotation: int = 0

    def image(self, frame: np.ndarray) -> np.ndarray:
        """(size[1], size[0], 3) uint8: the view of ``frame``; outside the frame is black."""
        return cv2.warpAffine(frame, self.matrix, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def to_frame(self, pose: Pose) -> Pose:
        """A pose found in this view, in frame pixels. World landmarks turn back with the image:
        BlazePose's metric axes follow the image it was given (x right, y down)."""
        inverse = cv2.invertAffineTransform(self.matrix)
        image = pose.image.copy()
        image[:, :2] = pose.image[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        linear = self.matrix[:, :2]
        rotation = linear / np.sqrt(abs(np.linalg.det(linear)))  # frame -> view directions
        world = pose.world.copy()
        world[:, :2] = pose.world[:, :2] @ rotation  # (R^T w) for each row w
        return Pose(image, world.astype(np.float32), pose.score)

    def holds(self, pose: Pose, margin: float = 0.02) -> bool:
        """Whether a pose (in view pixels) lies inside the view: a body cut by its edge is extrapolated."""
        width, height = self.size
        xy = pose.image[:, :2]
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        return bool(lo[0] >= -margin * width and lo[1] >= -margin * height
                    and hi[0] <= (1 + margin) * width and hi[1] <= (1 + margin) * height)


def crop_view(centre: Sequence[float], side: float, rotation: int = 0, out: int = VIEW_SIDE) -> View:
    """A square of ``side`` frame px around ``centre`` (x, y), scaled to ``out`` px and turned by ``rotation``°."""
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), rotation, out / side)
    matrix[:, 2] += (out / 2 - centre[0], out / 2 - centre[1])
    return View(matrix, (out, out), rotation)


def tile_views(width: int, height: int, grid: int, overlap: float = 0.25) -> list[View]:
    """A ``grid`` × ``grid`` of overlapping tiles (each ``1 + overlap`` times a plain tile) covering the frame,
    each scaled so its longer side is VIEW_SIDE."""
    tile_w, tile_h = min(width, width / grid * (1 + overlap)), min(height, height / grid * (1 + overlap))
    scale = VIEW_SIDE / max(tile_w, tile_h)
    views = []
    for row in range(grid):
        for col in range(grid):
            x0 = (width - tile_w) * col / max(grid - 1, 1)
            y0 = (height - tile_h) * row / max(grid - 1, 1)
            matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
            views.append(View(matrix, (round(tile_w * scale), round(tile_h * scale))))
    return views


def body_box(detection: Detection, confident: float = 0.5, margin: float = 0.1) -> np.ndarray:
    """(4,) x, y, w, h around the joints the detector is confident of (widened by ``margin``): landmarks it
    guesses (a hidden leg, the far arm) stretch its box, and a follower that trusts that box drifts and grows.
    The detection's own box when fewer than 4 joints are confident."""
    keypoints = detection.keypoints_2d
    xy = keypoints[keypoints[:, 2] >= confident, :2]
    xy = xy[~np.isnan(xy).any(axis=1)]
    if len(xy) < 4:
        return detection.bbox
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi - lo + 2 * pad]).astype(np.float32)


def box_centre(box: np.ndarray) -> np.ndarray:
    return box[:2] + box[2:] / 2


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two x, y, w, h boxes."""
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(a[2] * a[3] + b[2] * b[3]) - inter
    return inter / union if union > 0 else 0.0


def near(box: np.ndarray, expected: np.ndarray, reach: float = 1.0, sizes: tuple[float, float] = (0.4, 2.5)) -> bool:
    """Whether ``box`` can be the person expected at ``expected`` (x, y, w, h): centre within ``reach`` × the
    expected size of its centre, size (longer side) within ``sizes`` of the expected."""
    offset = np.abs(box_centre(box) - box_centre(expected))
    size, expected_size = max(box[2], box[3]), max(expected[2], expected[3])
    return bool(np.all(offset <= reach * max(expected_size, 1.0))
                and sizes[0] * expected_size <= size <= sizes[1] * expected_size)


@dataclass
class Follow:
    """Where the followed person is: a box (x, y, w, h) smoothed over their sightings, its centre's
    velocity (px/frame), the frame last seen at."""

    box: np.ndarray | None = None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    index: int = -1
    last_search: int | None = None  # frame index of the last tile search

    SMOOTHING = 0.6  # weight of a new sighting: pose boxes jump with the limbs (an arm up, a leg out)

    def saw(self, index: int, box: np.ndarray) -> None:
        box = np.asarray(box, np.float32)
        if self.box is not None and 0 < index - self.index <= 3:
            step = (box_centre(box) - box_centre(self.box)) / (index - self.index)
            limit = 0.3 * max(box[2], box[3])  # a body moves less than a third of its size a frame
            self.velocity = (1 - self.SMOOTHING) * self.velocity + self.SMOOTHING * np.clip(step, -limit, limit)
            centre = box_centre(box)
            size = (1 - self.SMOOTHING) * self.box[2:] + self.SMOOTHING * box[2:]
            box = np.concatenate([centre - size / 2, size]).astype(np.float32)
        else:
            self.velocity = np.zeros(2, np.float32)
        self.box, self.index = box, index

    def expected(self, index: int, max_unseen: int) -> tuple[np.ndarray, int] | None:
        """The box expected at ``index`` (moved on at the velocity for at most 3 frames, size kept) and the
        frames since the person was seen; None when never seen or unseen for more than ``max_unseen``."""
        if self.box is None or not 0 < index - self.index <= max_unseen:
            return None
        box = self.box.copy()
        box[:2] += self.velocity * min(index - self.index, 3)
        return box, index - self.index


@dataclass
class LookCounts:
    """What the second look did, for logs and benches."""

    implausible: int = 0  # the detector's detections dropped as not a person
    implausible_looks: int = 0  # poses found in crops and tiles dropped as not a person
    unconfirmed: int = 0  # tile finds a second view did not find again
    upright_looks: int = 0  # lying poses seen again upright
    upright_found: int = 0  # ... and replaced by the pose found there
    crop_looks: int = 0  # frames given a crop look
    crop_found: int = 0
    searches: int = 0  # tile searches
    search_found: int = 0
    finder_calls: int = 0


class SecondLook:
    """Per-job second looks (module docstring); ``refine(frame, detections)`` -> the frame's people."""

    def __init__(self, finder: Finder, check: Plausibility = PLAUSIBLE, max_unseen: int = 30, search_every: int = 5,
                 crop_scale: float = 2.5, rotations: Sequence[int] = ROTATIONS, grids: Sequence[int] = (2, 3),
                 fov: float | None = None):
        self.finder, self.check = finder, check
        self.max_unseen, self.search_every = max_unseen, search_every
        self.crop_scale, self.rotations, self.grids = crop_scale, tuple(rotations), tuple(grids)
        self.fov = fov
        self.counts = LookCounts()
        self.follows: OrderedDict[str, Follow] = OrderedDict()  # per job (jobs interleave), most recent last

    def plausible(self, detection: Detection) -> bool:
        return not self.check.implausible(detection.keypoints_2d, detection.keypoints_3d)

    def refine(self, frame: FrameImage, detections: list[Detection]) -> list[Detection]:
        """The frame's plausible detections, plus the followed person found by a second look where the
        detector missed them, or people found by a tile search where nobody was found."""
        follow = self.follows.pop(frame.job, None) or Follow()  # a job not seen lately starts afresh
        self.follows[frame.job] = follow
        while len(self.follows) > MAX_JOBS_FOLLOWED:
            self.follows.popitem(last=False)
        people = [d for d in detections if self.plausible(d)]
        self.counts.implausible += len(detections) - len(people)
        # A lying pose seen again upright stands for it: where it was expected, the upright one is.
        seen = [(d, self._stood_up(frame.image, d)) for d in one_per_person(people)]
        people = [final for _, final in seen]
        index = frame.index
        expected = follow.expected(index, self.max_unseen)
        if expected is not None:
            box, unseen = expected
            match = [final for original, final in seen if near(body_box(original), box) or near(body_box(final), box)]
            if not match:
                found = self._look_around(frame.image, box, unseen)
                match = [self._stood_up(frame.image, found)] if found is not None else []
                # The followed person found again outweighs another pose on them (one lying across them).
                people = match + [d for d in people if not any(overlap(d, m) or on(d, m.bbox) for m in match)]
            if match:
                follow.saw(index, body_box(max(match, key=lambda d: iou(body_box(d), box))))
                return people
        # Nobody expected, or the followed person not found here: bystanders do not replace them until
        # they have been unseen for max_unseen frames; a tile search's find does (nobody else was seen).
        # While the followed person is still expected, their crop is the better look: search rarely.
        every = self.search_every * (3 if expected is not None else 1)
        if not people and (follow.last_search is None or index - follow.last_search >= every):
            follow.last_search = index
            people = [self._stood_up(frame.image, d) for d in self._search(frame.image)]
            expected = None
        if people and expected is None:
            follow.saw(index, body_box(max(people, key=lambda d: float(d.bbox[2] * d.bbox[3]))))
        return people

    def _detections(self, image: np.ndarray, view: View) -> list[Detection]:
        """Plausible poses found in ``view`` of ``image`` and inside it, as frame Detections."""
        self.counts.finder_calls += 1
        height, width = image.shape[:2]
        found = []
        for pose in self.finder(view.image(image)):
            if not view.holds(pose):
                continue
            detection = pose_detection(view.to_frame(pose), width, height, self.fov)
            if self.plausible(detection):
                found.append(detection)
            else:
                self.counts.implausible_looks += 1
        return found

    def _stood_up(self, image: np.ndarray, detection: Detection) -> Detection:
        """A lying ``detection`` seen again in an upright square view of its box: the best pose found there
        with its centre inside that box, else the detection as it was (and one not lying as it is)."""
        if not lying(detection):
            return detection
        self.counts.upright_looks += 1
        view = crop_view(box_centre(detection.bbox), max(detection.bbox[2:]))
        again = [d for d in self._detections(image, view) if contains(detection.bbox, box_centre(d.bbox))]
        if not again:
            return detection
        self.counts.upright_found += 1
        return max(again, key=lambda d: d.score)

    def _look_around(self, image: np.ndarray, expected: np.ndarray, unseen: int) -> Detection | None:
        """The best plausible pose at the expected place and size: upright, turned over, then (the expected size
        is rough: pose boxes breathe with the limbs) at another crop size (wider and tighter on alternate
        frames) upright and turned over, then turned sideways, then in a wider view upright and turned over,
        where it may lie further off (within ``REACQUIRE`` times the usual reach, so inside the view). The crop
        grows with the frames unseen."""
        self.counts.crop_looks += 1
        side = self.crop_scale * max(expected[2], expected[3], 16.0) * (1 + 0.03 * unseen)
        other = CROP_JITTER[unseen % len(CROP_JITTER)]
        upright, over, *sideways = self.rotations
        views = [(1.0, upright), (1.0, over), (other, upright), (other, over), *[(1.0, r) for r in sideways],
                 (REACQUIRE, upright), (REACQUIRE, over)]
        for scale, rotation in views:
            view = crop_view(box_centre(expected), side * scale, rotation)
            reach = max(scale, 1.0)
            candidates = [d for d in self._detections(image, view) if near(body_box(d), expected, reach)]
            if candidates:
                self.counts.crop_found += 1
                return max(candidates, key=lambda d: iou(body_box(d), expected))
        return None

    def _search(self, image: np.ndarray) -> list[Detection]:
        """People found in overlapping tiles (every grid's plausible poses, overlaps merged, the larger kept),
        each found again in a second, square view centred on it (closer, else at its tile's scale): poses on
        objects rarely survive a second view."""
        self.counts.searches += 1
        height, width = image.shape[:2]
        found = {}  # id -> (detection, the side in frame px of the square that holds its tile)
        for grid in self.grids:
            for view in tile_views(width, height, grid):
                tile_side = max(view.size) / float(np.hypot(*view.matrix[:, 0]))
                found.update((id(d), (d, tile_side)) for d in self._detections(image, view))
        kept = one_per_person([d for d, _ in found.values()], key=lambda d: float(d.bbox[2] * d.bbox[3]))
        confirmed = []
        for detection in kept:
            close = self.crop_scale * max(detection.bbox[2:])
            # Closer, upright then turned over (a rider in the air); then at the tile's scale: a small body the
            # landmarker finds in a tile it can miss close up.
            sides = (close, close, found[id(detection)][1])
            for side, rotation in zip(sides, (*self.rotations[:2], self.rotations[0])):
                view = crop_view(box_centre(detection.bbox), side, rotation)
                again = [d for d in self._detections(image, view) if iou(d.bbox, detection.bbox) >= 0.3]
                if again:
                    confirmed.append(max(again, key=lambda d: iou(d.bbox, detection.bbox)))
                    break
        self.counts.search_found += bool(confirmed)
        self.counts.unconfirmed += len(kept) - len(confirmed)
        return confirmed


def one_per_person(detections: list[Detection], key=lambda d: d.score) -> list[Detection]:
    """``detections`` less those that overlap a better one (by ``key``): a landmarker with several poses can put
    two on one person, and overlapping tiles find a person twice."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=key, reverse=True):
        if not any(overlap(detection, other) for other in kept):
            kept.append(detection)
    return kept


def overlap(a: Detection, b: Detection) -> bool:
    """Whether two detections can be one person: their boxes overlap much, or one holds the other's centre."""
    return (iou(a.bbox, b.bbox) >= 0.3 or contains(a.bbox, box_centre(b.bbox))
            or contains(b.bbox, box_centre(a.bbox)))


def lying(detection: Detection) -> bool:
    """Whether a pose's torso (hip centre to shoulder centre) runs more across the image than up or down it."""
    keypoints = detection.keypoints_2d[:, :2]
    axis = np.nanmean(keypoints[TORSO[:, 0]], axis=0) - np.nanmean(keypoints[TORSO[:, 1]], axis=0)
    return bool(abs(axis[0]) > abs(axis[1]))


def on(detection: Detection, box: np.ndarray, share: float = 0.3, confident: float = 0.5) -> bool:
    """Whether at least ``share`` of the joints ``detection`` is confident of lie in ``box`` (x, y, w, h): a pose
    with its head and shoulders on a person and its hips far off beside them is a second pose on that person."""
    keypoints = detection.keypoints_2d
    xy = keypoints[keypoints[:, 2] >= confident, :2]
    inside = (xy >= box[:2]) & (xy <= box[:2] + box[2:])
    return len(xy) > 0 and float(inside.all(axis=1).mean()) >= share


def contains(box: np.ndarray, point: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[0] + box[2] and box[1] <= point[1] <= box[1] + box[3])


class SecondLookDetector:
    """A Detector whose every frame's people go through a SecondLook after ``inner`` has run."""

    def __init__(self, inner: Detector, look: SecondLook):
        self.inner, self.look = inner, look
        self.name = inner.name
        self.image_focal = getattr(inner, "image_focal", None)

    def detect(self, frames: Sequence[FrameImage]) -> list[list[Detection]]:
        return [self.look.refine(frame, people) for frame, people in zip(frames, self.inner.detect(frames))]

    def close(self) -> None:
        self.inner.close()
        close = getattr(self.look.finder, "close", None)
        if close is not None:
            close()


def with_second_look(detector: BlazePoseDetector) -> SecondLookDetector:
    """``detector`` with second looks by BlazePose in IMAGE mode on the same model. Where the rider is expected
    a weak person detection (0.2) is worth a look: its pose must still be plausible, inside the crop, and of the
    expected size at the expected place."""
    finder = PoseFinder(detector.model, num_poses=2, min_confidence=0.2)
    return SecondLookDetector(detector, SecondLook(finder, fov=detector.fov))
