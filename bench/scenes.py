"""Synthetic multi-person scenes with ground truth, for tracker tests and benches.

People walk on straight lines at their own depth (box height from the pinhole
model), with a walking pose. The detector is simulated: it misses a person
hidden behind a nearer one (box overlap), misses at random, adds false
positives, and perturbs boxes, keypoints, depth and appearance vectors.

``make_scene(family, seed)`` builds one scene of a family in ``FAMILIES``.
"""
from __future__ import annotations

from dataclasses import dataclass

import motmetrics
import numpy as np

from pose.camera import default_focal
from pose.detection import Detection, FrameDetections
from pose.skeleton import CANONICAL_JOINTS, JOINT_INDEX
from tracking.iou import iou_matrix
from tracking.types import TrackedFrame

WIDTH, HEIGHT, FPS = 1280, 720, 30.0
BODY_HEIGHT_M = 1.7
APPEARANCE_DIM = 32

# Standing pose, x right / y down, in body heights from the pelvis; mirrored pairs share a row.
_HALF_POSE = {
    "nose": (0.0, -0.42), "eye": (0.03, -0.44), "ear": (0.06, -0.43), "shoulder": (0.12, -0.33),
    "elbow": (0.15, -0.18), "wrist": (0.16, -0.05), "hip": (0.07, 0.0), "knee": (0.07, 0.24),
    "ankle": (0.07, 0.48), "pelvis": (0.0, 0.0), "neck": (0.0, -0.33), "spine": (0.0, -0.15),
    "head_top": (0.0, -0.52), "heel": (0.06, 0.5), "big_toe": (0.1, 0.5),
}


def _template() -> np.ndarray:
    """(J, 2) standing pose in body heights; a person's left is image right (facing the camera)."""
    points = np.zeros((len(CANONICAL_JOINTS), 2))
    for name, i in JOINT_INDEX.items():
        side, _, part = name.partition("_")
        if side in ("left", "right") and part in _HALF_POSE:
            x, y = _HALF_POSE[part]
            points[i] = (x if side == "left" else -x, y)
        else:
            points[i] = _HALF_POSE[name]
    return points


TEMPLATE = _template()
# joint -> swing amplitude along x (body heights): legs opposite to each other, arms opposite to legs.
_SWINGS = {f"{side}_{part}": amplitude * sign for side, sign in (("left", 1), ("right", -1))
           for part, amplitude in (("knee", 0.05), ("ankle", 0.1), ("heel", 0.1), ("big_toe", 0.1), ("wrist", -0.06))}
_SWING = np.array([_SWINGS.get(name, 0.0) for name in CANONICAL_JOINTS])


def walking_pose(phase: float) -> np.ndarray:
    """(J, 2) pose in body heights at this phase of the gait cycle (radians)."""
    pose = TEMPLATE.copy()
    pose[:, 0] += _SWING * np.sin(phase)
    return pose


@dataclass
class Walker:
    """A person moving in a straight line between two frames (appear, leave)."""

    person_id: int
    start: tuple[float, float]  # pelvis px at frame `appear`
    velocity: tuple[float, float]  # px / frame
    height_px: float  # box height
    appear: int = 0
    leave: int = 10**9
    away: tuple[int, int] | None = None  # frames [a, b) spent out of view (left and came back)
    appearance: np.ndarray | None = None

    def visible(self, t: int, offset: np.ndarray = np.zeros(2)) -> bool:
        """In view at frame t, with the picture moved by ``offset`` px (a camera pan)."""
        in_time = self.appear <= t < self.leave and not (self.away and self.away[0] <= t < self.away[1])
        x, y = self.pelvis(t) + offset
        return in_time and 0 <= x < WIDTH and 0 <= y < HEIGHT

    def pelvis(self, t: int) -> np.ndarray:
        return np.array(self.start) + (t - self.appear) * np.array(self.velocity)

    def keypoints(self, t: int) -> np.ndarray:
        """(J, 2) px."""
        return self.pelvis(t) + self.height_px * walking_pose(0.25 * t + self.person_id)


def box_of(points: np.ndarray) -> np.ndarray:
    """(J, 2) px -> (4,) x, y, w, h around them with a 10% margin."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = 0.1 * (hi - lo)
    return np.r_[lo - pad, hi - lo + 2 * pad]


def _box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of box a covered by box b."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / (a[2] * a[3])


@dataclass
class Scene:
    family: str
    frames: list[FrameDetections]
    truth: list[dict[int, np.ndarray]]  # per frame: person id -> true box (4,) xywh


def _detection(keypoints_px: np.ndarray, height_px: float, appearance: np.ndarray | None,
               rng: np.random.Generator, noise: float) -> Detection:
    """A detector's report of a person: noisy keypoints, box, 3D pose with translation, appearance."""
    focal = default_focal(WIDTH, HEIGHT)
    noisy = keypoints_px + rng.normal(0, noise * height_px, keypoints_px.shape)
    depth = focal * BODY_HEIGHT_M / height_px * (1 + rng.normal(0, 0.03))
    relative_m = (keypoints_px - keypoints_px[JOINT_INDEX["pelvis"]]) / height_px * BODY_HEIGHT_M
    relative_m = relative_m + rng.normal(0, noise * BODY_HEIGHT_M, relative_m.shape)
    pelvis = keypoints_px[JOINT_INDEX["pelvis"]]
    translation = np.r_[(pelvis - (WIDTH / 2, HEIGHT / 2)) * depth / focal, depth]
    keypoints_3d = np.c_[relative_m, np.zeros(len(relative_m))] + translation
    extras = {}
    if appearance is not None:
        extras["appearance"] = (appearance + rng.normal(0, 0.15, appearance.shape)).astype(np.float32)
    return Detection(bbox=box_of(noisy).astype(np.float32), score=float(rng.uniform(0.6, 1.0)),
                     keypoints_2d=np.c_[noisy, np.ones(len(noisy))].astype(np.float32),
                     keypoints_3d=keypoints_3d.astype(np.float32), extras=extras)


@dataclass
class Pan:
    """A whip-pan: nothing is detected on frames [start, end), and halfway through the picture jumps by ``shift`` px."""

    start: int
    end: int
    shift: tuple[float, float]

    def offset(self, t: int) -> np.ndarray:
        return np.array(self.shift) if t >= (self.start + self.end) // 2 else np.zeros(2)


def render(family: str, walkers: list[Walker], frames: int, rng: np.random.Generator, miss: float = 0.0,
           false_positives: float = 0.0, noise: float = 0.01, pan: Pan | None = None) -> Scene:
    """Simulate the detector over the walkers: occlusion by nearer people, random misses, false positives,
    a camera pan."""
    out, truth = [], []
    for t in range(frames):
        offset = pan.offset(t) if pan else np.zeros(2)
        keypoints = {w.person_id: w.keypoints(t) + offset for w in walkers}
        visible = [w for w in walkers if w.visible(t, offset)]
        boxes = {w.person_id: box_of(keypoints[w.person_id]) for w in visible}
        blind = pan is not None and pan.start <= t < pan.end
        people = []
        for w in visible:
            hidden = any(o.height_px > w.height_px and _box_overlap(boxes[w.person_id], boxes[o.person_id]) > 0.4
                         for o in visible if o is not w)
            if not hidden and not blind and rng.random() >= miss:
                people.append(_detection(keypoints[w.person_id], w.height_px, w.appearance, rng, noise))
        for _ in range(rng.poisson(false_positives)):
            height = rng.uniform(100, 300)
            centre = rng.uniform((0, 0), (WIDTH, HEIGHT))
            appearance = rng.normal(0, 1, APPEARANCE_DIM) if walkers[0].appearance is not None else None
            people.append(_detection(centre + height * walking_pose(rng.uniform(0, 6)), height, appearance, rng, noise))
            people[-1].score = float(rng.uniform(0.3, 0.7))
        rng.shuffle(people)
        out.append(FrameDetections(t, t * 1000.0 / FPS, people))
        truth.append(boxes)
    return Scene(family, out, truth)


def make_scene(family: str, seed: int = 0, appearance: bool = True, frames: int = 150) -> Scene:
    """One scene of ``family``; ``appearance`` gives detections an appearance vector (like HMR 2.0 + PHALP)."""
    rng = np.random.default_rng(seed)

    def look() -> np.ndarray | None:
        """A person's appearance vector; detections see it with noise."""
        return rng.normal(0, 1, APPEARANCE_DIM) / np.sqrt(APPEARANCE_DIM) * 3 if appearance else None

    if family == "crossing":
        # Two people walking towards each other; the farther one is hidden while they overlap.
        y = HEIGHT * rng.uniform(0.45, 0.6)
        walkers = [Walker(1, (100, y), (7, rng.uniform(-0.3, 0.3)), 320, appearance=look()),
                   Walker(2, (WIDTH - 100, y + rng.uniform(-20, 20)), (-7, 0), 300, appearance=look())]
        return render(family, walkers, frames, rng, noise=0.008)
    if family == "occlusion":
        # A standing person in front; two walk behind it, hidden for ~15 frames each.
        walkers = [Walker(1, (WIDTH / 2, HEIGHT * 0.55), (0, 0), 400, appearance=look()),
                   Walker(2, (150, HEIGHT * 0.5), (6, 0), 250, appearance=look()),
                   Walker(3, (WIDTH - 150, HEIGHT * 0.45), (-5, 0), 220, appearance=look())]
        return render(family, walkers, frames, rng, miss=0.05)
    if family == "reenter":
        # People step out of view (behind a pillar / the frame edge) and come back within a second.
        walkers = [Walker(i + 1, (rng.uniform(200, WIDTH - 200), rng.uniform(300, 450)),
                          (rng.uniform(-2, 2), rng.uniform(-0.5, 0.5)), rng.uniform(200, 320),
                          away=(int(s), int(s + rng.uniform(8, 25))), appearance=look())
                   for i, s in enumerate(rng.uniform(20, 100, 3))]
        return render(family, walkers, frames, rng, miss=0.05)
    if family == "clutter":
        # Missed detections, false positives and noisy boxes around four walkers.
        walkers = [Walker(i + 1, (rng.uniform(100, WIDTH - 100), rng.uniform(250, 500)),
                          (rng.uniform(-4, 4), rng.uniform(-0.5, 0.5)), rng.uniform(180, 320), appearance=look())
                   for i in range(4)]
        return render(family, walkers, frames, rng, miss=0.2, false_positives=0.5, noise=0.02)
    if family == "crowd":
        # Ten people entering and leaving at random times, crossing each other.
        walkers = []
        for i in range(10):
            appear = int(rng.uniform(0, frames / 2))
            x0 = rng.choice([50.0, WIDTH - 50.0])
            walkers.append(Walker(i + 1, (x0, rng.uniform(250, 500)), (np.sign(WIDTH / 2 - x0) * rng.uniform(3, 8), 0),
                                  rng.uniform(150, 350), appear=appear, appearance=look()))
        return render(family, walkers, frames, rng, miss=0.1, false_positives=0.2)
    if family == "pan":
        # Three people; the camera whips round for 6-12 frames (nobody detected) and everyone's box lands
        # 100-250 px away, all by the same shift.
        walkers = [Walker(i + 1, (250 + 350 * i + rng.uniform(-40, 40), rng.uniform(300, 450)),
                          (rng.uniform(-2, 2), rng.uniform(-0.5, 0.5)), rng.uniform(200, 320), appearance=look())
                   for i in range(3)]
        start = int(rng.uniform(40, 100))
        shift = rng.uniform(100, 250) * np.array([rng.choice([-1, 1]), rng.uniform(-0.3, 0.3)])
        return render(family, walkers, frames, rng, miss=0.05,
                      pan=Pan(start, start + int(rng.uniform(6, 13)), (float(shift[0]), float(shift[1]))))
    raise ValueError(f"unknown scene family {family!r}")


FAMILIES = ("crossing", "occlusion", "reenter", "clutter", "crowd", "pan")


def score(scene: Scene, tracked: list[TrackedFrame], min_iou: float = 0.5) -> motmetrics.MOTAccumulator:
    """MOT accumulator of published people (every state) against the truth, boxes matched at IoU ≥ min_iou."""
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for truth, frame in zip(scene.truth, tracked):
        true_boxes = np.array(list(truth.values())).reshape(-1, 4)
        boxes = np.array([p.detection.bbox for p in frame.people]).reshape(-1, 4)
        iou = iou_matrix(true_boxes, boxes)
        accumulator.update(list(truth), [p.track_id for p in frame.people], np.where(iou >= min_iou, 1 - iou, np.nan))
    return accumulator
