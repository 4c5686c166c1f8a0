"""BlazePose on the Tasks API against the legacy API, side by side in one run: ``python -m bench.blazepose``.

The legacy detector (mediapipe 0.10.14 ``solutions.pose``, complexity 1, the old
default) cannot share a venv with mediapipe 1.2.x, so it runs from a venv of its
own that this bench makes under /tmp from the 0.10.14 wheel (Python <= 3.12 only).
Every variant runs in a fresh process (``bench/blazepose_worker.py``), video mode,
on the same frames, timing the same work (BGR → RGB and the landmarker call).

- vid.mp4 (180 frames, the runner): frames with the runner found, per-frame 2D
  agreement with the legacy landmarks (px), wall and CPU ms/frame (interleaved
  rounds); 3D and angle differences to the legacy values (what docs/protocol.md
  reports); the tracker's gap filling on each detector's poses (``bench.tracking``).
- the snowboarding clips (../shared/media/snow/labels.txt): full frame, no tracker:
  the share of labelled frames where a pose is on the rider (found) and where the
  largest pose is (primary), as snow/README.md defines them.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench import timing
from bench.tracking import gap_errors, withheld_bursts
from detectors.base import FrameImage
from detectors.blazepose import BlazePoseDetector, Pose, landmark_box, pose_detection
from detectors.blazepose_models import ensure
from pose.angles import ANGLE_KEYS, joint_angles_array
from pose.detection import FrameDetections
from pose.skeleton import hip_centre
from tracking.iou import iou_matrix
from tracking.tracker import Tracker

LEGACY_VENV = Path(tempfile.gettempdir()) / "posebus-bench-mediapipe-0.10.14"
LEGACY_PACKAGES = ["numpy", "protobuf>=4.25.3,<5", "absl-py", "attrs", "flatbuffers", "matplotlib",
                   "opencv-python-headless<5"]
WORKER = Path(__file__).resolve().parent / "blazepose_worker.py"
SNOW = timing.VIDEO.parent / "snow"
LEGACY = "legacy 0.10.14, complexity 1 (old default)"
DEFAULT = "Tasks full (default)"
VARIANTS = {  # name: worker arguments (engine, model, num_poses, census_every)
    LEGACY: ("legacy", "-", "-", "-"),
    "Tasks lite": ("tasks", "lite", "4", "30"),
    DEFAULT: ("tasks", "full", "4", "30"),
    "Tasks heavy": ("tasks", "heavy", "4", "30"),
    "bare landmarker, full, 4 poses (no census)": ("raw", "full", "4", "-"),
    "bare landmarker, full, 1 pose": ("raw", "full", "1", "-"),
}
ROUNDS = 2


def legacy_python() -> Path | None:
    """The legacy venv's interpreter, made on first use; None where 0.10.14 has no wheel (Python >= 3.13)."""
    python = LEGACY_VENV / "bin" / "python"
    if python.exists():
        return python
    if sys.version_info >= (3, 13):
        return None
    subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # --no-deps: the wheel's own list adds jax and a second OpenCV, which solutions.pose does not use.
    subprocess.run([*pip, "--no-deps", "mediapipe==0.10.14"], check=True)
    subprocess.run([*pip, *LEGACY_PACKAGES], check=True)
    return python


def run_variant(variant: tuple, videos: list[Path]) -> list[dict[str, np.ndarray]]:
    """One fresh worker process over ``videos``: per video the worker's arrays (see bench/blazepose_worker.py)."""
    engine, model = variant[:2]
    python = legacy_python() if engine == "legacy" else Path(sys.executable)
    if model != "-":
        ensure(model)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.npz"
        subprocess.run([str(python), str(WORKER), *variant, str(out), *map(str, videos)], check=True,
                       stderr=subprocess.DEVNULL)
        data = dict(np.load(out))
    return [{key.split("_", 1)[1]: value for key, value in data.items() if key.startswith(f"v{i}_")}
            for i in range(len(videos))]


# --- scoring ----------------------------------------------------------------------------------------------------------

def boxes(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(F, P, 33, 4) landmarks -> (F, P, 4) x, y, w, h landmark boxes (NaN where no pose)."""
    out = np.full(image.shape[:2] + (4,), np.nan, np.float32)
    for f, p in zip(*np.nonzero(np.isfinite(image[:, :, 0, 0]))):
        out[f, p] = landmark_box(image[f, p, :, :2], width, height)
    return out


def on_runner(run: dict, legacy: dict, size: tuple[int, int]) -> np.ndarray:
    """(F,) index of the pose matching the legacy runner (IoU > 0.5), -1 where none does."""
    mine, theirs = boxes(run["image"], *size), boxes(legacy["image"], *size)[:, 0]
    match = np.full(len(mine), -1)
    for f in range(len(mine)):
        present = np.isfinite(mine[f, :, 0])
        if present.any() and np.isfinite(theirs[f, 0]):
            iou = iou_matrix(theirs[f][None], np.nan_to_num(mine[f]))[0]
            iou[~present] = 0
            match[f] = int(np.argmax(iou)) if iou.max() > 0.5 else -1
    return match


def detections(run: dict, match: np.ndarray, size: tuple[int, int]) -> list[FrameDetections]:
    """The runner's pose per frame as the detector would publish it (canonical joints, metric 3D, translation)."""
    frames = []
    for f, k in enumerate(match):
        people = [] if k < 0 else [pose_detection(Pose(run["image"][f, k], run["world"][f, k],
                                                       float(run["image"][f, k, :, 2].mean())), *size)]
        frames.append(FrameDetections(f, f * 1000 / 30, people))
    return frames


def vid_rows(runs: dict[str, list[dict]], size: tuple[int, int]) -> tuple[list[list], dict[str, list]]:
    legacy = runs[LEGACY][0]
    rows, published = [], {}
    wall_legacy = timing.median(r["wall_ms"][1:].mean() for r in runs[LEGACY])
    cpu_legacy = timing.median(r["cpu_ms"][1:].mean() for r in runs[LEGACY])
    for name, rounds in runs.items():
        run = rounds[0]
        match = on_runner(run, legacy, size)
        both = np.nonzero(match >= 0)[0]
        error = np.array([np.linalg.norm(run["image"][f, match[f], :, :2] - legacy["image"][f, 0, :, :2], axis=1).mean()
                          for f in both])
        wall = [r["wall_ms"][1:].mean() for r in rounds]
        cpu = [r["cpu_ms"][1:].mean() for r in rounds]
        poses = np.isfinite(run["image"][:, :, 0, 0]).sum(axis=1)
        rows.append([name, f"{(match >= 0).sum()}/{len(match)}", f"{poses.mean():.2f}",
                     f"{error.mean():.2f}", f"{np.median(error):.2f}", f"{np.percentile(error, 95):.2f}",
                     timing.spread(wall), f"{timing.median(wall) / wall_legacy:.2f}×",
                     timing.spread(cpu), f"{timing.median(cpu) / cpu_legacy:.2f}×"])
        published[name] = detections(run, match, size)
    return rows, published


def value_changes(published: dict[str, list[FrameDetections]]) -> list[list]:
    """How the published values of each Tasks variant differ from the legacy ones, frame by frame."""
    legacy = published[LEGACY]
    rows = []
    for name, frames in published.items():
        if name == LEGACY:
            continue
        pairs = [(a.people[0], b.people[0]) for a, b in zip(legacy, frames) if a.people and b.people]
        relative = [1000 * np.nanmean(np.linalg.norm((b.keypoints_3d - hip_centre(b.keypoints_3d))
                                                     - (a.keypoints_3d - hip_centre(a.keypoints_3d)), axis=1))
                    for a, b in pairs]
        depth = [hip_centre(b.keypoints_3d)[0, 2] / hip_centre(a.keypoints_3d)[0, 2] for a, b in pairs]
        angles = np.array([joint_angles_array(b.keypoints_3d) - joint_angles_array(a.keypoints_3d) for a, b in pairs])
        knees = [ANGLE_KEYS.index("leftKnee"), ANGLE_KEYS.index("rightKnee")]
        score = [b.score - a.score for a, b in pairs]
        rows.append([name, len(pairs), f"{np.mean(relative):.0f}", f"{np.median(depth):.3f}",
                     f"{np.nanmean(np.abs(angles)):.1f}", f"{np.nanmean(np.abs(angles[:, knees])):.1f}",
                     f"{np.mean(score):+.3f}"])
    return rows


def gap_rows(published: dict[str, list[FrameDetections]]) -> list[list]:
    rows = []
    for name in (LEGACY, DEFAULT):
        frames = published[name]
        withheld = withheld_bursts(len(frames))
        for method, tracker in (("prediction (`MotionMatching()`), K=0", Tracker(lookahead=0, smoothing=False)),
                                ("interpolation, K=8", Tracker(lookahead=8, smoothing=False))):
            e = gap_errors(frames, withheld, tracker)
            rows.append([name, method, f"{e['2d'].mean():.1f}", f"{e['3d'].mean():.0f}", f"{e['pose'].mean():.0f}",
                         f"{e['coverage']:.0%}"])
    return rows


def snow_labels() -> dict[str, dict[int, tuple[float, ...] | None]]:
    """clip -> frame -> rider box (x0, y0, x1, y1), or None when the rider is not visible ("skip" left out)."""
    labels: dict[str, dict] = {}
    for line in (SNOW / "labels.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        clip, frame, *rest = line.split()
        if rest == ["skip"]:
            continue
        labels.setdefault(clip, {})[int(frame)] = None if rest == ["none"] else tuple(map(float, rest))
    return labels


def on_rider(box: np.ndarray, rider: tuple[float, ...]) -> bool:
    """snow/README.md's rule: box centre inside the rider's box grown 20% a side, height 0.4-2.5× the rider's."""
    x0, y0, x1, y1 = rider
    grow_x, grow_y = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return (x0 - grow_x <= cx <= x1 + grow_x and y0 - grow_y <= cy <= y1 + grow_y
            and 0.4 <= box[3] / (y1 - y0) <= 2.5)


def snow_rows(labels: dict, clips: list[Path]) -> list[list]:
    rows = []
    for name, variant in VARIANTS.items():
        if variant[0] == "raw":
            continue
        found = primary = visible = 0
        for clip, run in zip(clips, run_variant(variant, clips)):
            found_boxes = boxes(run["image"], 640, 360)
            for frame, rider in labels[clip.stem].items():
                if rider is None or frame >= len(found_boxes):
                    continue
                visible += 1
                people = [b for b in found_boxes[frame] if np.isfinite(b[0])]
                found += any(on_rider(b, rider) for b in people)
                primary += bool(people) and on_rider(people[0], rider)
        rows.append([name, visible, f"{found / visible:.0%}", f"{primary / visible:.0%}"])
        print(f"  snow: {name} done", file=sys.stderr)
    return rows


# --- several people ---------------------------------------------------------------------------------------------------

def two_runners_frames(video: Path, frames: int = 90, offset: int = 60, left: int = 460,
                       width: int = 600) -> list[np.ndarray]:
    """Two people in every frame: ``video``'s runner (columns ``left`` to ``left + width``, where the panning
    camera keeps them) beside itself ``offset`` frames later. (H, 2 × width, 3) BGR images."""
    capture = cv2.VideoCapture(str(video))
    images = [capture.read()[1] for _ in range(frames + offset)]
    capture.release()
    strips = [image[:, left:left + width] for image in images]
    return [np.hstack([strips[i], strips[i + offset]]) for i in range(frames)]


def two_people_rows(images: list[np.ndarray]) -> list[list]:
    """posebus's detector and tracker (as the track stage runs it, primary subject on) on the two runners."""
    rows = []
    for name, options in (("Tasks full, 4 poses (default)", {}), ("Tasks full, 1 pose", {"num_poses": 1})):
        detector = BlazePoseDetector(**options)
        tracker = Tracker(subjects=1)
        start = time.process_time()
        tracked = []
        for index, image in enumerate(images):
            found = detector.detect([FrameImage("bench", index, index * 1000 / 30, image)])[0]
            tracked += tracker.push(FrameDetections(index, index * 1000 / 30, found))
        cpu_ms = (time.process_time() - start) * 1000 / len(images)
        detector.close()
        tracked += tracker.finish()
        half = images[0].shape[1] / 2
        ids: dict[str, list[int]] = {"left": [], "right": []}
        both = 0
        for frame in tracked:
            sides = {}
            for person in frame.people:
                x, _, w, _ = person.detection.bbox
                sides["left" if x + w / 2 < half else "right"] = person
            both += sum(p.state == "observed" for p in sides.values()) == 2
            for side, person in sides.items():
                ids[side].append(person.track_id)
        switches = sum(int(np.sum(np.diff(track) != 0)) for track in ids.values())
        primaries = [frame.people[0].track_id for frame in tracked if frame.people]
        rows.append([name, f"{both}/{len(images)}", ", ".join(f"{side} {sorted(set(v))}" for side, v in ids.items()),
                     switches, len(set(primaries)), f"{cpu_ms:.1f}"])
    return rows


def main() -> str:
    video = timing.VIDEO
    if legacy_python() is None:
        return "## BlazePose: Tasks API vs legacy\n\nNot run: mediapipe 0.10.14 has no wheel for this Python."
    size = (1920, 1088)
    trials = {name: (lambda variant=variant: run_variant(variant, [video])[0]) for name, variant in VARIANTS.items()}
    runs, quiet = timing.interleaved(trials, ROUNDS)
    rows, published = vid_rows(runs, size)
    labels = snow_labels()
    clips = [SNOW / f"{clip}.mp4" for clip in labels]
    return "\n\n".join([
        "## BlazePose: Tasks API (mediapipe 1.2.x) vs the legacy API (0.10.14)",
        "Each variant in a fresh process, video (tracking) mode, timing the BGR frame → landmarks per frame "
        "(colour conversion, the landmarker and, for posebus's detector (`Tasks ...`: `BlazePoseDetector`, 4 poses "
        "at most, a census every 30 frames), its census frames; frame 0, the set-up, excluded); the bare "
        "landmarker rows are MediaPipe's VIDEO-mode `PoseLandmarker` alone, for what the census saves. "
        f"{ROUNDS} interleaved rounds, median (min–max). {quiet} CPU: all the "
        "process's threads. Runner found: a pose whose landmark box overlaps the legacy runner's with IoU > 0.5 "
        "(for the legacy row: frames with a pose). Agreement: mean distance of the 33 landmarks to the legacy "
        "ones on frames where both found the runner, then mean / median / p95 over frames; the runner is ~535 px "
        "tall. Poses/frame: all poses found (vid.mp4 has one person).",
        timing.table(["variant", "runner found", "poses/frame", "agreement px mean", "median", "p95",
                      "wall ms/frame", "÷ legacy", "CPU ms/frame", "÷ legacy"], rows),
        "### What changes in the published values\n\nThe runner's Detection as the detect stage publishes it "
        "(canonical joints, metric 3D with the fitted translation), each Tasks variant against the legacy one on the "
        "same frame: root-relative 3D difference (mm, mean over joints then frames), the ratio of fitted depth (hip "
        "centre z), mean absolute joint-angle difference (all angles, and the knees), mean score difference.",
        timing.table(["variant", "frames", "root-rel. 3D mm", "depth ratio (median)", "angles |Δ|°", "knees |Δ|°",
                      "score Δ"], value_changes(published)),
        "### Tracker gap filling on each detector's poses\n\n`bench.tracking`'s withholding (35% of frames in bursts "
        "of 1-15, seed 7) on the runner's poses from each detector; errors against the withheld detection of the same "
        "detector.",
        timing.table(["detector", "method", "2D px mean", "3D mm mean", "root-rel. mm mean", "coverage"],
                     gap_rows(published)),
        "### Snowboarding clips, full frame, no tracker\n\nsnow/labels.txt (every 6th frame; `skip` left out, `none` "
        "not counted): found = some pose on the rider, primary = the largest pose on the rider (snow/README.md's rule "
        "on the landmark box). The legacy API tracks one person.",
        timing.table(["variant", "labelled frames with the rider", "found", "primary"], snow_rows(labels, clips)),
        "### Two people: vid.mp4's runner beside itself 2 s later\n\n90 frames of 1200×1088 (`two_runners_frames`, "
        "also the clip of tests/test_blazepose_people.py), posebus's detector and tracker in one process (the tracker "
        "as the track stage runs it, primary subject on). Both observed: frames where each runner is observed; ids: "
        "the track ids published on each side; switches: changes of track id on a side; primaries: distinct track "
        "ids published first; CPU: detector and tracker, all threads, one run.",
        timing.table(["detector", "both observed", "ids", "ID switches", "primaries", "CPU ms/frame"],
                     two_people_rows(two_runners_frames(video))),
    ])


if __name__ == "__main__":
    timing.publish("blazepose", main())
