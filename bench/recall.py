"""Rider recall on the snowboarding clips: ``python -m bench.recall``.

Scores results files (``launch.py VIDEO --out DIR``, one JSON message a line) against
hand-drawn rider boxes (``../shared/media/snow/labels.txt``, format in that folder's
README), the way issue 19 defines it. On a labelled frame with a rider box:

- **found**: a published person whose ``state`` is ``observed`` or ``interpolated`` has
  its box centre inside the rider's box grown by 20% on each side and a box height
  between 0.4x and 2.5x the rider's;
- **primary**: that person is the first in ``people`` (what the app draws);
- **identities**: distinct ``track_id`` among the people that match the rider (one is right).

On every labelled frame (``none`` frames too; ``skip`` frames are left out) an ``observed``
person that does not match the rider is a **false person**: a pose on an object, or a
bystander (the clips have few; look at the frames it names before calling it a detector error).

The old 4D-Humans overlays (``CLIP.4dhumans.mp4``, 1440x810) are scored by their mesh:
found when at least ``MESH_PIXELS`` of its pink lie inside the rider's box scaled to the
overlay's size (the README's count of frames with a mesh uses the same 300 over the frame).

The bench runs ``launch.py CLIP --out DIR`` for each setting (default: today's default
pipeline) on the four clips and vid.mp4, settings interleaved clip by clip, and reports
the scores and the CPU time per frame of the whole pipeline (every process), side by side.
``python -m bench.recall --score FILE.jsonl ...`` scores existing results files (clip from
the job id, or ``--clip``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import cv2
import numpy as np

from bench.timing import ROOT, VIDEO, free_port, publish, table
from video.sources import open_source

SNOW = ROOT.parent / "shared" / "media" / "snow"
LABELS = SNOW / "labels.txt"
CLIPS = ("airbag-jump", "park-jump", "treeline-jump", "kicker-followcam")
GROW = 0.2  # the rider's box grows by this fraction of its size on each side
HEIGHT_RANGE = (0.4, 2.5)  # a match's box height, relative to the rider's
SEEN = ("observed", "interpolated")
OVERLAY_SIZE = (1440, 810)
MESH_PIXELS = 300  # pink pixels inside the rider's box that make a mesh on the rider
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Box:
    """A rider box in pixels: corners x0, y0 (top-left) and x1, y1 (bottom-right)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def grown(self, fraction: float) -> Box:
        dx, dy = (self.x1 - self.x0) * fraction, (self.y1 - self.y0) * fraction
        return Box(self.x0 - dx, self.y0 - dy, self.x1 + dx, self.y1 + dy)

    def scaled(self, sx: float, sy: float) -> Box:
        return Box(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1


# A clip's labels: frame index -> the rider's box, or None where the rider is not visible.
# Frames labelled ``skip`` (only part of the rider visible) are not in it.
ClipLabels = dict[int, Box | None]


def parse_labels(lines: Iterable[str]) -> dict[str, ClipLabels]:
    """labels.txt lines (``CLIP FRAME x0 y0 x1 y1``, ``CLIP FRAME none``, ``CLIP FRAME skip``, # comments)."""
    labels: dict[str, ClipLabels] = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) == 3 and words[2] in ("none", "skip"):
            clip, frame, value = words[0], int(words[1]), None if words[2] == "none" else "skip"
        elif len(words) == 6:
            clip, frame, value = words[0], int(words[1]), Box(*map(float, words[2:]))
        else:
            raise ValueError(f"labels line {number}: expected CLIP FRAME x0 y0 x1 y1 | none | skip, "
                             f"got {line.strip()!r}")
        clip_labels = labels.setdefault(clip, {})
        if value != "skip":
            clip_labels[frame] = value
    return labels


def read_labels(path: Path = LABELS) -> dict[str, ClipLabels]:
    with open(path, encoding="utf-8") as lines:
        return parse_labels(lines)


def matches_rider(bbox: Iterable[float], rider: Box) -> bool:
    """Whether a published ``bbox`` (x, y, w, h px) is on the rider: its centre inside the rider's box grown
    by GROW, its height within HEIGHT_RANGE of the rider's."""
    x, y, w, h = bbox
    low, high = HEIGHT_RANGE
    return rider.grown(GROW).contains(x + w / 2, y + h / 2) and low * rider.height <= h <= high * rider.height


@dataclass
class ClipScore:
    """One results file scored against one clip's labels; frame lists say where to look."""

    clip: str
    labelled: int = 0  # frames with a rider box
    found: list[int] = field(default_factory=list)
    primary: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)  # labelled frames where the rider is not found
    identities: set[int] = field(default_factory=set)  # track_ids of people that match the rider
    false_people: list[tuple[int, int]] = field(default_factory=list)  # (frame, track_id): observed, not the rider
    frames: int = 0  # frame messages in the results

    @property
    def false_tracks(self) -> set[int]:
        return {track for _, track in self.false_people}


def score_frames(frames: Iterable[Mapping], labels: ClipLabels, clip: str = "") -> ClipScore:
    """Score a job's ``frame`` messages (other message types are ignored) against its clip's labels."""
    score = ClipScore(clip)
    seen_frames = set()
    for message in frames:
        if message.get("type") != "frame":
            continue
        score.frames += 1
        index = message["index"]
        if index not in labels:
            continue
        seen_frames.add(index)
        rider = labels[index]
        on_rider = [rider is not None and person["state"] in SEEN and matches_rider(person["bbox"], rider)
                    for person in message["people"]]
        for person, match in zip(message["people"], on_rider):
            if match:
                score.identities.add(person["track_id"])
            elif person["state"] == "observed":
                score.false_people.append((index, person["track_id"]))
        if rider is not None:
            score.labelled += 1
            if any(on_rider):
                score.found.append(index)
                if on_rider[0]:
                    score.primary.append(index)
            else:
                score.missed.append(index)
    absent = [index for index, rider in labels.items() if rider is not None and index not in seen_frames]
    score.labelled += len(absent)  # a labelled frame with no frame message is a miss too
    score.missed = sorted(score.missed + absent)
    return score


def read_results(path: Path) -> list[dict]:
    """The messages of a ``launch.py --out`` results file."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


STATE_COLOURS = {"observed": (0, 0, 255), "interpolated": (0, 200, 255)}  # BGR; other states grey


def draw_misses(video: Path, frames: Iterable[Mapping], score: ClipScore, labels: ClipLabels, folder: Path,
                zoom: int = 3) -> list[Path]:
    """One PNG per missed labelled frame of ``score`` (``folder``/<clip>_<frame>.png): the video's frame around
    the rider's box (green, with 2.5 box sizes around it), every published person's box drawn on it (observed red,
    interpolated orange, others grey), scaled by ``zoom``: where to look first when a rider is missed."""
    people = {m["index"]: m["people"] for m in frames if m.get("type") == "frame"}
    misses, written = set(score.missed), []
    folder.mkdir(parents=True, exist_ok=True)
    for index, _, image in open_source(str(video)):
        if not misses:
            break
        if index not in misses:
            continue
        misses.discard(index)
        rider = labels[index]
        for person in people.get(index, []):
            x, y, w, h = map(int, person["bbox"])
            cv2.rectangle(image, (x, y), (x + w, y + h), STATE_COLOURS.get(person["state"], (128, 128, 128)))
        cv2.rectangle(image, (int(rider.x0), int(rider.y0)), (int(rider.x1), int(rider.y1)), (0, 255, 0))
        around = rider.grown(2.5)
        x0, y0 = max(int(around.x0), 0), max(int(around.y0), 0)
        crop = image[y0:max(int(around.y1), y0 + 1), x0:max(int(around.x1), x0 + 1)]
        path = folder / f"{score.clip}_{index:04d}.png"
        cv2.imwrite(str(path), cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST))
        written.append(path)
    return written


# --- the old 4D-Humans overlays -----------------------------------------------------------------

def mesh_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of the overlays' pink mesh in a BGR ``image`` (H, W, 3)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (hue >= 140) & (hue <= 175) & (saturation >= 100) & (value >= 80)


@dataclass
class OverlayScore:
    clip: str
    labelled: int = 0
    found: list[int] = field(default_factory=list)
    mesh_frames: int = 0  # frames with a mesh anywhere
    frames: int = 0


def score_overlay(path: Path, labels: ClipLabels, clip: str = "",
                  source_size: tuple[int, int] = (640, 360)) -> OverlayScore:
    """Frames of an overlay video whose mesh lies on the rider's box (scaled from ``source_size`` to the video's)."""
    score = OverlayScore(clip)
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise ValueError(f"cannot open overlay {path}")
    index = 0
    try:
        while True:
            ok, image = video.read()
            if not ok:
                break
            mask = mesh_mask(image)
            score.mesh_frames += int(mask.sum()) >= MESH_PIXELS
            rider = labels.get(index)
            if rider is not None:
                score.labelled += 1
                box = rider.scaled(image.shape[1] / source_size[0], image.shape[0] / source_size[1])
                x0, y0 = max(int(box.x0), 0), max(int(box.y0), 0)
                if int(mask[y0:int(np.ceil(box.y1)), x0:int(np.ceil(box.x1))].sum()) >= MESH_PIXELS:
                    score.found.append(index)
            index += 1
    finally:
        video.release()
    score.frames = index
    return score


# --- running the pipeline -----------------------------------------------------------------------

@dataclass
class Run:
    """One pipeline run on one video."""

    messages: list[dict]
    cpu_s: float  # user + system time of the launcher and every stage
    wall_s: float

    @property
    def frames(self) -> list[dict]:
        return [m for m in self.messages if m.get("type") == "frame"]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(video: Path, options: list[str], out: Path, job: str) -> Run:
    """``launch.py VIDEO --out DIR *options`` on its own ports; its results file and cost. Options that start
    with ``@DIR`` run another checkout's launch.py with its own .venv (e.g. main's, for today's default).

    CPU time comes from the children's rusage: the launcher waits for its stages, so theirs is in it.
    """
    root = next((Path(o[1:]) for o in options if o.startswith("@")), ROOT)
    python = str(root / ".venv" / "bin" / "python") if root != ROOT else sys.executable
    port = free_port()
    argv = [python, "launch.py", str(video), "--job", job, "--out", str(out),
            "--results", f"tcp://127.0.0.1:{port}", "--job-log", str(out / "joblog"),
            *[o for o in options if not o.startswith("@")]]
    cpu_before, start = children_cpu_s(), time.monotonic()
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    wall, cpu = time.monotonic() - start, children_cpu_s() - cpu_before
    if done.returncode != 0:
        raise RuntimeError(f"launch.py {video.name} {' '.join(options)} failed: {done.stderr.strip()[-2000:]}")
    return Run(read_results(out / f"{job}.jsonl"), cpu, wall)


def runner_frames(frames: list[dict]) -> tuple[int, int]:
    """vid.mp4 (one runner, no labels): frames whose first person is observed or interpolated, and
    observed people besides the first (false people: the clip has no one else)."""
    with_runner = sum(bool(f["people"]) and f["people"][0]["state"] in SEEN for f in frames)
    others = sum(p["state"] == "observed" for f in frames for p in f["people"][1:])
    return with_runner, others


def plausibility_counts(video: Path, labels: ClipLabels | None) -> dict[str, int]:
    """The default detector (BlazePose with second looks) on every frame of ``video``: of the full-frame
    detections, how many ``pose.plausibility`` drops, and on labelled frames whether each is on the rider (without
    labels, vid.mp4: one runner and nobody else, every detection is the person); and how many poses the second
    look's crops and tiles dropped, and tile finds it did not find again."""
    from detectors.base import FrameImage
    from detectors.blazepose import BlazePoseDetector
    from detectors.second_look import one_per_person, with_second_look
    from pose.plausibility import DEFAULT

    detector = with_second_look(BlazePoseDetector())
    counts = dict.fromkeys(["detections", "dropped", "real_dropped", "false_dropped", "false_kept", "scored"], 0)
    source = cv2.VideoCapture(str(video))
    try:
        index = 0
        while True:
            ok, image = source.read()
            if not ok:
                break
            frame = FrameImage(video.stem, index, index * 1000 / 30, image)
            people = one_per_person(detector.inner.detect([frame])[0])
            detector.look.refine(frame, people)
            for person in people:
                dropped = bool(DEFAULT.implausible(person.keypoints_2d, person.keypoints_3d))
                counts["detections"] += 1
                counts["dropped"] += dropped
                if labels is None or index in labels:
                    rider = labels[index] if labels is not None else None
                    real = labels is None or (rider is not None and matches_rider(person.bbox, rider))
                    counts["scored"] += 1
                    counts["real_dropped"] += real and dropped
                    counts["false_dropped"] += (not real) and dropped
                    counts["false_kept"] += (not real) and not dropped
            index += 1
    finally:
        source.release()
        detector.close()
    look = detector.look.counts
    return {**counts, "look_dropped": look.implausible_looks, "unconfirmed": look.unconfirmed,
            "looks": look.crop_looks + look.searches}


def plausibility_section(videos: dict[str, Path], labels: dict[str, ClipLabels]) -> str:
    rows = []
    for name, path in videos.items():
        c = plausibility_counts(path, labels.get(name))
        rows.append([name, c["detections"], c["dropped"], c["scored"], c["false_dropped"], c["false_kept"],
                     c["real_dropped"], c["looks"], c["look_dropped"], c["unconfirmed"]])
    return ("### Trust only people: what the plausibility check drops\n\n"
            "The default detector in this process on every frame: BlazePose's full-frame detections (VIDEO mode, "
            "one per person) through `pose.plausibility`; on labelled frames (vid.mp4: every frame, one runner) a "
            "detection off the rider is a false person. Then the second look on the same frames: poses its crops "
            "and tiles found that the check dropped, and tile finds that a closer view did not find again (both "
            "never reach the tracker; they are not matched to labels).\n\n"
            + table(["video", "detections", "dropped", "on labelled frames", "false people dropped",
                     "false people kept", "real people dropped", "second looks", "look poses dropped",
                     "tile finds unconfirmed"], rows))


# --- markdown -----------------------------------------------------------------------------------

def percent(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "–"


def score_rows(scores: list[ClipScore]) -> list[list]:
    rows = [[s.clip, s.labelled, percent(len(s.found), s.labelled), percent(len(s.primary), s.labelled),
             len(s.identities), f"{len(s.false_people)} ({len(s.false_tracks)} tracks)",
             ", ".join(map(str, s.missed)) or "–"] for s in scores]
    labelled = sum(s.labelled for s in scores)
    rows.append(["**all**", labelled, percent(sum(len(s.found) for s in scores), labelled),
                 percent(sum(len(s.primary) for s in scores), labelled),
                 f"{sum(max(len(s.identities) - 1, 0) for s in scores)} extra",
                 sum(len(s.false_people) for s in scores), ""])
    return rows


SCORE_HEADER = ["clip", "labelled", "found", "primary", "identities", "false people (observed)", "missed frames"]


def overlay_section(labels: dict[str, ClipLabels]) -> str:
    scores = [score_overlay(SNOW / f"{clip}.4dhumans.mp4", labels[clip], clip)
              for clip in CLIPS if (SNOW / f"{clip}.4dhumans.mp4").exists()]
    rows = [[s.clip, s.labelled, percent(len(s.found), s.labelled), percent(s.mesh_frames, s.frames),
             ", ".join(str(i) for i in sorted(set(labels[s.clip]) - set(s.found)) if labels[s.clip][i]) or "–"]
            for s in scores]
    return ("### The old 4D-Humans overlays\n\nA labelled frame is found when ≥ "
            f"{MESH_PIXELS} px of the pink mesh lie inside the rider's box (scaled to 1440×810). "
            "No identities or primary: the overlay shows meshes only.\n\n"
            + table(["clip", "labelled", "mesh on the rider", "frames with a mesh", "missed frames"], rows))


def report(settings: dict[str, list[str]], scores: dict[str, dict[str, ClipScore]], runs: dict[str, dict[str, Run]],
           overlays: str) -> str:
    names = list(settings)
    parts = ["## Rider recall on the snowboarding clips",
             f"Scored against `../shared/media/snow/labels.txt` (every 6th frame) as issue 19 defines it: "
             f"**found** = an `observed`/`interpolated` person with its box centre inside the rider's box grown "
             f"by {GROW:.0%} and a height {HEIGHT_RANGE[0]}–{HEIGHT_RANGE[1]}× the rider's; **primary** = that "
             "person is first in `people`; **identities** = distinct `track_id`s on the rider; **false people** = "
             "`observed` people off the rider on labelled frames (person-frames, and how many tracks; on the "
             "tiled clips the bystander counts there too). `.third` and `.tiled` clips are made by "
             "`bench/small_riders.py` (a clip shrunk to a third in a frame of snow, alone or beside a bystander "
             "clip at a quarter). `python -m bench.recall` (settings: `--setting NAME='launch.py options'`, "
             f"`--baseline DIR`). Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average "
             f"{os.getloadavg()[0]:.1f} at the end."]
    shared = [clip for clip in CLIPS if clip in scores[names[0]]]
    made = [clip for clip in scores[names[0]] if clip not in CLIPS]
    for name in names:
        options = " ".join(settings[name]) or "(no options)"
        parts.append(f"### {name}: `launch.py VIDEO {options}`")
        if shared:
            parts.append(table(SCORE_HEADER, score_rows([scores[name][clip] for clip in shared])))
        if made:
            parts.append("Small riders:\n\n"
                         + table(SCORE_HEADER, score_rows([scores[name][clip] for clip in made])))
    videos = list(runs[names[0]])
    if "vid" in videos:
        rows = []
        for name in names:
            with_runner, others = runner_frames(runs[name]["vid"].frames)
            rows.append([name, percent(with_runner, len(runs[name]["vid"].frames)), others])
        parts.append("### vid.mp4 (one runner)\n\n" + table(["setting", "runner first, observed or interpolated",
                                                             "other observed people"], rows))
    header = ["video", "frames", *[f"{name} CPU ms/frame" for name in names],
              *[f"{name} ÷ {names[0]}" for name in names[1:]]]
    rows = []
    for video in videos + ["**four clips**"] * bool(shared):
        keys = shared if video == "**four clips**" else [video]
        frames = sum(len(runs[names[0]][k].frames) for k in keys)
        cpu = {name: sum(runs[name][k].cpu_s for k in keys) for name in names}
        rows.append([video, frames, *[f"{1000 * cpu[n] / frames:.1f}" for n in names],
                     *[f"{cpu[n] / cpu[names[0]]:.2f}×" for n in names[1:]]])
    parts.append("### Cost, side by side\n\nCPU time (user + system) of the launcher and every stage over the "
                 "whole run (start-up and model loading included, about 3 s), per decoded frame; on each video "
                 "the settings run one after the other.\n\n" + table(header, rows))
    parts.append(overlays)
    return "\n\n".join(parts)


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, _, options = text.partition("=")
    return name, options.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recall", description=__doc__.split("\n")[0])
    parser.add_argument("--setting", action="append", type=parse_setting, metavar="NAME='OPTIONS'",
                        help="a pipeline setting to score (repeatable; default: the default pipeline, and it "
                             "without --second-look); options starting @DIR run DIR's launch.py with DIR/.venv")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the default pipeline of the checkout in DIR (with its .venv) first, "
                             "e.g. a worktree of main for today's default")
    parser.add_argument("--clips", nargs="*", default=list(CLIPS), help="clips to run (default: all four)")
    parser.add_argument("--no-vid", dest="vid", action="store_false", help="leave out vid.mp4")
    parser.add_argument("--no-small", dest="small", action="store_false",
                        help="leave out the small-rider clips made from the four (bench/small_riders.py)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the results files in DIR/<setting>/")
    parser.add_argument("--score", nargs="+", type=Path, metavar="JSONL", help="only score these results files")
    parser.add_argument("--clip", help="with --score: the clip they are of (default: the job id)")
    parser.add_argument("--misses", nargs=2, type=Path, metavar=("VIDEO", "DIR"),
                        help="with --score: crops of VIDEO's missed labelled frames, with what was published, "
                             "into DIR (bench.recall.draw_misses)")
    parser.add_argument("--labels", type=Path, default=LABELS)
    args = parser.parse_args(argv)
    labels = read_labels(args.labels)
    if args.score:
        scores = []
        for path in args.score:
            messages = read_results(path)
            clip = args.clip or messages[0]["job"]
            if clip not in labels:
                parser.error(f"{path}: no labels for clip {clip!r} (use --clip)")
            scores.append(score_frames(messages, labels[clip], clip))
            if args.misses:
                draw_misses(args.misses[0], messages, scores[-1], labels[clip], args.misses[1])
        print(table(SCORE_HEADER, score_rows(scores)))
        return 0
    settings = dict(args.setting or [("default", []), ("no second look", ["--no-second-look"])])
    if args.baseline:
        settings = {f"baseline ({args.baseline.name})": [f"@{args.baseline.resolve()}"], **settings}
    with tempfile.TemporaryDirectory(prefix="posebus-recall-") as scratch:
        keep = args.keep or Path(scratch)
        videos = {clip: SNOW / f"{clip}.mp4" for clip in args.clips}
        if args.small:
            from bench import small_riders  # it builds on this module's labels

            made = small_riders.make_all(Path(scratch) / "small")
            labels.update(made)
            videos.update({name: Path(scratch) / "small" / f"{name}.avi" for name in made})
        if args.vid:
            videos["vid"] = VIDEO
        runs: dict[str, dict[str, Run]] = {name: {} for name in settings}
        for video, path in videos.items():
            for name, options in settings.items():
                print(f"  {video}: {name}", file=sys.stderr)
                runs[name][video] = run_pipeline(path, options, keep / name, video)
        print("  plausibility", file=sys.stderr)
        plausibility = plausibility_section(videos, labels)
    scores = {name: {video: score_frames(run.messages, labels[video], video)
                     for video, run in runs[name].items() if video in labels} for name in settings}
    publish("recall", report(settings, scores, runs, overlay_section(labels) + "\n\n" + plausibility))
    return 0


if __name__ == "__main__":
    sys.exit(main())
