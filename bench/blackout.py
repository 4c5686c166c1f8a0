"""Blackout harness: ``python -m bench.blackout [SEEDS]``.

Real footage loses a person because the picture goes: a spray of snow, a whip-pan,
someone in front of the lens. This harness blacks out about 35% of a real video's
frames, in bursts of 1-15 (``bench.tracking.withheld_bursts``), *before decoding*:
the blacked copy is written to a file and decoded again, and the default detector
runs on it as the detect stage does (its own tracking restarts after each burst,
and every person gets the stage's appearance vector). The tracker's output is then
scored against the same pipeline on the untouched video:

- primary ID switches: changes of the first person's ``track_id`` beyond those of
  the untouched run;
- duplicate frames: frames with more people than the untouched run has;
- identity swaps: a track of the blacked run that covers two people of the untouched run;
- gap filling: on blacked frames, the 2D keypoint distance of each person's published
  values from the untouched run's (where it observed them), next to holding that person's
  last observed values (PHALP's ghost). Both runs smooth alike, so the distance is the
  filling's. A burst longer than the look-ahead starts with predicted frames.

Beside each seed, what the detector leaves to a gap-filler: "interpolation ÷ hold", a
straight line between the blacked run's own detections across each burst, scored like the
filling; and "worst re-acquired px", over the bursts, how far the detector's poses on the
first frames after one are from the untouched run's (``reacquired_px``). ``repeat_spread``
feeds the landmarker the same picture again and again, to tell a pose that is still
settling from one the model cannot decide.

Clips: vid.mp4 (one runner) and two runners (``bench.blazepose.two_runners_frames``: its runner beside
itself 2 s later).
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import detectors
from bench.blazepose import two_runners_frames
from bench.clips import read_video, write_video
from bench.timing import table
from bench.tracking import VIDEO, run, withheld_bursts
from detectors.base import FrameImage
from pose.detection import FrameDetections
from stages.detect import add_appearance
from tracking.iou import iou_matrix
from tracking.tracker import Tracker
from tracking.types import TrackedFrame
from video.sources import open_source

SEEDS = range(32)
LOOKAHEAD = 8


def blacked_out(images: list[np.ndarray], blacked: np.ndarray) -> list[np.ndarray]:
    return [np.zeros_like(image) if black else image for image, black in zip(images, blacked)]


def detect(video: Path) -> list[FrameDetections]:
    """The default detector over a decoded video, as one detect worker gives it to the track stage."""
    detector = detectors.create("blazepose", {})  # the default options, as a worker of the default pipeline
    frames = []
    for index, pts_ms, image in open_source(str(video)):
        frame = FrameImage("blackout", index, pts_ms, image)
        frames.append(FrameDetections(index, pts_ms, add_appearance(frame, detector.detect([frame])[0])))
    detector.close()
    return frames


def track(frames: list[FrameDetections]) -> list[TrackedFrame]:
    """The track stage's default tracker (look-ahead 8, a primary subject)."""
    return run(Tracker(lookahead=LOOKAHEAD, subjects=1), frames)


@dataclass
class Score:
    primary_switches: int  # beyond the untouched run's
    duplicate_frames: int
    identity_swaps: int
    fill_px: float  # mean over blacked frames and people
    hold_px: float

    @property
    def fill_ratio(self) -> float:
        return self.fill_px / self.hold_px


def _switches(tracked: list[TrackedFrame]) -> int:
    firsts = [f.people[0].track_id for f in tracked if f.people]
    return sum(a != b for a, b in zip(firsts, firsts[1:]))


def identities(reference: list[TrackedFrame], tracked: list[TrackedFrame]) -> dict[int, set[int]]:
    """Track id of the blacked run -> the untouched run's ids it overlaps (box IoU ≥ 0.5) on observed frames."""
    covers: dict[int, set[int]] = {}
    for truth, frame in zip(reference, tracked):
        seen = [p for p in frame.people if p.state == "observed"]
        if not seen or not truth.people:
            continue
        overlap = iou_matrix(np.array([p.detection.bbox for p in seen], dtype=np.float64),
                             np.array([p.detection.bbox for p in truth.people], dtype=np.float64))
        for row, person in enumerate(seen):
            if overlap[row].max() >= 0.5:
                covers.setdefault(person.track_id, set()).add(truth.people[int(overlap[row].argmax())].track_id)
    return covers


def _keypoint_px(a: np.ndarray, b: np.ndarray) -> float:
    """Mean 2D distance (px) over joints both have; (J, ≥2) arrays."""
    return float(np.nanmean(np.linalg.norm(a[:, :2] - b[:, :2], axis=1)))


def score(reference: list[TrackedFrame], tracked: list[TrackedFrame], blacked: np.ndarray) -> Score:
    covers = identities(reference, tracked)
    owner = {track_id: next(iter(ids)) for track_id, ids in covers.items() if len(ids) == 1}
    fill, hold, last_seen = [], [], {}  # last_seen: reference id -> its last observed detection (blacked run)
    for truth, frame, black in zip(reference, tracked, blacked):
        if black:
            for person in truth.people:
                if person.state != "observed":
                    continue
                truth_2d = person.detection.keypoints_2d
                published = [p for p in frame.people if owner.get(p.track_id) == person.track_id]
                if published and person.track_id in last_seen:
                    fill.append(_keypoint_px(published[0].detection.keypoints_2d, truth_2d))
                    hold.append(_keypoint_px(last_seen[person.track_id].keypoints_2d, truth_2d))
        for p in frame.people:
            if p.state == "observed" and p.track_id in owner:
                last_seen[owner[p.track_id]] = p.detection
    return Score(primary_switches=max(0, _switches(tracked) - _switches(reference)),
                 duplicate_frames=sum(len(f.people) > len(t.people) for t, f in zip(reference, tracked)),
                 identity_swaps=sum(len(ids) > 1 for ids in covers.values()),
                 fill_px=float(np.mean(fill)) if fill else float("nan"),
                 hold_px=float(np.mean(hold)) if hold else float("nan"))


# --- what the detector leaves to a gap-filler --------------------------------------------

REACQUIRED_FRAMES = 3  # frames after a burst over which the re-acquired poses are compared


def _matching(detections: list, box: np.ndarray):
    """The detection whose box overlaps ``box`` (4,) most, at IoU ≥ 0.5, else None."""
    if not detections:
        return None
    overlap = iou_matrix(np.array([d.bbox for d in detections], dtype=np.float64), box[None].astype(np.float64))[:, 0]
    return detections[int(overlap.argmax())] if overlap.max() >= 0.5 else None


def reacquired_px(reference: list[FrameDetections], blacked_run: list[FrameDetections], blacked: np.ndarray) -> float:
    """The worst burst's mean 2D distance (px) of the blacked run's detections on the ``REACQUIRED_FRAMES`` frames
    after it from the untouched run's detections of the same people there.

    After a burst the detector acquires the person afresh while the untouched run has tracked them all
    along; where the two disagree, the far end of that gap's filling is off by as much, whatever the tracker does.
    """
    worst = float("nan")
    for end in np.flatnonzero(blacked[:-1] & ~blacked[1:]) + 1:
        distances = []
        for index in range(end, min(end + REACQUIRED_FRAMES, len(blacked))):
            if blacked[index]:
                break
            for truth in reference[index].people:
                found = _matching(blacked_run[index].people, truth.bbox)
                if found is not None:
                    distances.append(_keypoint_px(found.keypoints_2d, truth.keypoints_2d))
        if distances:
            worst = float(np.fmax(worst, np.mean(distances)))
    return worst


def interpolation_ratio(reference: list[TrackedFrame], blacked_run: list[FrameDetections],
                        blacked: np.ndarray) -> float:
    """Linear interpolation of the blacked run's own detections across each burst, ÷ holding the last one,
    scored like ``score``'s fill: a gap-filler without a motion model, for scale."""
    seen = [i for i, frame in enumerate(blacked_run) if frame.people and not blacked[i]]
    interpolated, held = [], []
    for index in np.flatnonzero(blacked):
        before = [i for i in seen if i < index]
        after = [i for i in seen if i > index]
        if not before or not after:
            continue
        start, end = before[-1], after[0]
        for truth in reference[index].people:
            if truth.state != "observed":
                continue
            first = _matching(blacked_run[start].people, truth.detection.bbox)
            last = _matching(blacked_run[end].people, truth.detection.bbox)
            if first is None or last is None:
                continue
            weight = (index - start) / (end - start)
            blended = (1 - weight) * first.keypoints_2d + weight * last.keypoints_2d
            interpolated.append(_keypoint_px(blended, truth.detection.keypoints_2d))
            held.append(_keypoint_px(first.keypoints_2d, truth.detection.keypoints_2d))
    return float(np.mean(interpolated) / np.mean(held)) if held else float("nan")


def repeat_spread(images: list[np.ndarray], index: int, repeats: int = 8) -> tuple[float, float]:
    """(tracked, fresh): the largest mean 2D distance (px) between the poses the landmarker (VIDEO mode,
    one person, 33 ms apart) gives on frame ``index`` fed ``repeats`` more times and its first pose there,
    after tracking from frame 0 and started on that frame. A settling pose would converge; a
    pose the model cannot decide moves on the same picture."""
    from detectors.blazepose import DEFAULT_MODEL, _mp_image, create_landmarker, poses_of

    height, width = images[index].shape[:2]

    def spread(first: int) -> float:
        landmarker = create_landmarker(DEFAULT_MODEL, True, 1)
        poses = []
        for step, image in enumerate([*images[first:index + 1], *[images[index]] * repeats]):
            found = poses_of(landmarker.detect_for_video(_mp_image(image), 33 * (step + 1)), width, height)
            if step >= index - first and found:
                poses.append(found[0].image[:, :2])
        landmarker.close()
        return max(float(np.mean(np.linalg.norm(pose - poses[0], axis=-1))) for pose in poses)

    return spread(0), spread(index)


@dataclass
class Seed:
    score: Score
    reacquired_px: float
    interpolation_ratio: float


def blackout_scores(images: list[np.ndarray], seeds, folder: Path) -> tuple[list[TrackedFrame], list[Seed]]:
    """The untouched run and, per blackout seed, its score and what the detector left to fill."""
    untouched = detect(write_video(folder / "untouched.avi", images))
    reference = track(untouched)
    results = []
    for seed in seeds:
        blacked = withheld_bursts(len(images), seed=seed)
        detections = detect(write_video(folder / f"blacked-{seed}.avi", blacked_out(images, blacked)))
        results.append(Seed(score(reference, track(detections), blacked), reacquired_px(untouched, detections, blacked),
                            interpolation_ratio(reference, detections, blacked)))
    return reference, results


def section(name: str, images: list[np.ndarray], seeds, folder: Path) -> str:
    reference, results = blackout_scores(images, seeds, folder)
    scores = [r.score for r in results]
    rows = [[seed, s.primary_switches, s.duplicate_frames, s.identity_swaps, f"{s.fill_px:.1f}", f"{s.hold_px:.1f}",
             f"{s.fill_ratio:.2f}", f"{r.interpolation_ratio:.2f}", f"{r.reacquired_px:.1f}"]
            for seed, s, r in zip(seeds, scores, results)]
    ratios = np.array([s.fill_ratio for s in scores])
    summary = (f"**{name}** ({len(images)} frames, {max(len(f.people) for f in reference)} people in the untouched "
               f"run): primary ID switches {sum(s.primary_switches for s in scores)}, duplicate frames "
               f"{sum(s.duplicate_frames for s in scores)}, identity swaps {sum(s.identity_swaps for s in scores)} "
               f"over {len(scores)} seeds; fill ÷ hold-last mean {ratios.mean():.2f}, worst {ratios.max():.2f} "
               f"(seed {list(seeds)[int(ratios.argmax())]}), ≤ 0.5 on {(ratios <= 0.5).sum()}/{len(scores)} seeds.")
    return "\n\n".join([summary, table(["seed", "primary switches", "duplicate frames", "identity swaps",
                                        "fill px", "hold-last px", "fill ÷ hold",
                                        "interpolation ÷ hold", "worst re-acquired px"], rows)])


def spread_line(images: list[np.ndarray], frames=(17, 60, 120)) -> str:
    spreads = {index: repeat_spread(images, index) for index in frames}
    return ("The same picture fed again 8 times (`repeat_spread`), largest move of the pose, after tracking from "
            "frame 0 / started there: " + "; ".join(f"frame {index} {tracked:.1f} / {fresh:.1f} px"
                                                     for index, (tracked, fresh) in spreads.items()) + ".")


def main(seeds=SEEDS) -> str:
    with tempfile.TemporaryDirectory(prefix="posebus-blackout-") as scratch:
        folder = Path(scratch)
        runner = read_video(VIDEO)
        parts = [section("vid.mp4", runner, seeds, folder), spread_line(runner),
                 section("two runners (vid.mp4's runner beside itself 2 s later, bench.blazepose.two_runners_frames)",
                         two_runners_frames(VIDEO), seeds, folder)]
    return "\n\n".join([
        "## Blackout: people lost because the picture goes",
        f"About 35% of the frames blacked out in bursts of 1-15 before decoding, seeds {seeds.start}-{seeds.stop - 1}; "
        "the default detector (one worker) and tracker (look-ahead 8, primary subject) on the blacked copy, scored "
        "against the same on the untouched video (bench/blackout.py says how).",
        *parts])


if __name__ == "__main__":
    print(main(range(int(sys.argv[1])) if len(sys.argv) > 1 else SEEDS))
