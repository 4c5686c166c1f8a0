"""Pipeline throughput with BlazePose against a plain loop: ``python -m bench.pipeline``.

Pipeline: ``launch.py vid.mp4 --workers N --blazepose-mode MODE``, a subscriber
in this process. Plain loop: one fresh process running ``cv2.VideoCapture``
and ``BlazePoseDetector.detect`` frame after frame. Both are timed

- end to end: from starting the process(es) to the last result (``job_end``
  received / last frame detected), so interpreter start-up, imports and model
  loading are included;
- steady state: from frame ``WARM_UP_FRAMES`` to the last frame finished
  (``timestamps.published`` in the pipeline).

Agreement: mean 2D keypoint distance of each run to the 1-worker video-mode
pipeline of the same round. With several workers each one sees every N-th
frame; in video mode its MediaPipe tracker carries over such gaps
(``detectors/blazepose.py``, ``max_gap``), so the distance shows what that
costs against one worker seeing every frame.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from typing import Callable, Iterator

import cv2
import numpy as np

from bench.spooled import Spooled
from bench.timing import ROOT, VIDEO, free_port, interleaved, median, process_tree_cpu_seconds, publish, spread, table
from bus.client import subscribe

WARM_UP_FRAMES = 10
RESULT_TIMEOUT_MS = 120_000
REFERENCE = "pipeline, 1 worker, video"


@dataclass
class Run:
    """One run over the video: when each frame was finished, and what was found."""

    wall_s: float  # start of the first process -> last result
    cpu_s: float  # user + system time of every process of the run
    steady_cpu_s: float = 0.0  # the same, from frame WARM_UP_FRAMES to the last frame finished
    finished: list[float] = field(default_factory=list)  # time.time() per frame, in frame order
    keypoints: list[np.ndarray | None] = field(default_factory=list)  # (J, 3) per frame, None if nobody
    frames: list[dict] = field(default_factory=list)  # the pipeline's frame messages, with "received"

    @property
    def end_to_end_fps(self) -> float:
        return len(self.finished) / self.wall_s

    @property
    def steady_fps(self) -> float:
        return (len(self.finished) - 1 - WARM_UP_FRAMES) / (self.finished[-1] - self.finished[WARM_UP_FRAMES])

    @property
    def steady_cpu_ms_per_frame(self) -> float:
        return 1000 * self.steady_cpu_s / (len(self.finished) - 1 - WARM_UP_FRAMES)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def launch_and_collect(*options: str) -> Run:
    """Run ``launch.py VIDEO *options`` with a subscriber; every frame message gets a ``received`` time."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cpu_before, start = children_cpu_s(), time.time()
    launcher = Spooled([sys.executable, "launch.py", str(VIDEO), "--results", endpoint, "--wait-subscribers", "1",
                        *options], cwd=ROOT, text=True)
    run, cpu_marks = Run(wall_s=0.0, cpu_s=0.0), []
    with closing(subscribe(endpoint, timeout_ms=RESULT_TIMEOUT_MS)) as results:
        for message in stream_of(results, launcher):
            received = time.time()
            if message["type"] == "job_start":
                last_index = message["frame_count"] - 1
            elif message["type"] == "frame":
                if message["index"] in (WARM_UP_FRAMES, last_index):  # the stages are still running at both
                    cpu_marks.append(process_tree_cpu_seconds(launcher.pid))
                run.frames.append({**message, "received": received})
                run.finished.append(message["timestamps"]["published"])
                run.keypoints.append(message["people"][0]["keypoints_2d"] if message["people"] else None)
            elif message["type"] == "job_end":
                run.wall_s = received - start
                break
    _, errors = launcher.communicate()
    if launcher.returncode != 0 or message["status"] != "ok":
        raise RuntimeError(f"launch.py {' '.join(options)} failed ({launcher.returncode}): {errors[-2000:]}")
    run.cpu_s = children_cpu_s() - cpu_before
    run.steady_cpu_s = cpu_marks[1] - cpu_marks[0]
    return run


def stream_of(results: Iterator[dict], launcher: Spooled) -> Iterator[dict]:
    """The results, or, when none come in time, an error that says what the launcher did meanwhile."""
    try:
        yield from results
    except TimeoutError as exc:
        state = "still running" if launcher.poll() is None else f"exited {launcher.returncode}"
        raise RuntimeError(f"{exc}; launch.py {state}, its stderr ends:\n{launcher.said()[-2000:]}") from None


def plain_loop(mode: str, results: multiprocessing.Queue) -> None:
    """The single-process baseline (runs in a fresh process): decode, detect, next frame."""
    from detectors.base import FrameImage
    from detectors.blazepose import BlazePoseDetector

    detector = BlazePoseDetector(mode=mode)
    capture = cv2.VideoCapture(str(VIDEO))
    frame_ms = 1000.0 / capture.get(cv2.CAP_PROP_FPS)
    finished, keypoints = [], []
    ok, image = capture.read()
    while ok:
        index = len(finished)
        (people,) = detector.detect([FrameImage("plain", index, index * frame_ms, image)])
        finished.append(time.time())
        keypoints.append(people[0].keypoints_2d if people else None)
        if index == WARM_UP_FRAMES:
            warm_cpu_s = time.process_time()
        ok, image = capture.read()
    steady_cpu_s = time.process_time() - warm_cpu_s
    detector.close()
    results.put((finished, keypoints, steady_cpu_s))


def run_plain_loop(mode: str) -> Run:
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    cpu_before, start = children_cpu_s(), time.time()
    process = spawn.Process(target=plain_loop, args=(mode, queue))
    process.start()
    finished, keypoints, steady_cpu_s = queue.get(timeout=RESULT_TIMEOUT_MS / 1000)
    process.join()
    return Run(wall_s=finished[-1] - start, cpu_s=children_cpu_s() - cpu_before, steady_cpu_s=steady_cpu_s,
               finished=finished, keypoints=keypoints)


def keypoint_distance(run: Run, reference: Run) -> tuple[float, float, int]:
    """Mean and 95th percentile over frames of the mean 2D distance (px) of joints both runs see; frames compared."""
    per_frame = []
    for ours, theirs in zip(run.keypoints, reference.keypoints):
        if ours is None or theirs is None:
            continue
        seen = (ours[:, 2] > 0) & (theirs[:, 2] > 0)
        per_frame.append(float(np.linalg.norm(ours[seen, :2] - theirs[seen, :2], axis=1).mean()))
    return float(np.mean(per_frame)), float(np.percentile(per_frame, 95)), len(per_frame)


def body_height_px(run: Run) -> float:
    """Median over frames of the vertical extent of the seen keypoints: a scale for the distances."""
    return median(np.ptp(k[k[:, 2] > 0, 1]) for k in run.keypoints if k is not None)


def trials(modes: list[str], workers: list[int]) -> dict[str, Callable[[], Run]]:
    found = {}
    for mode in modes:
        found[f"plain loop, {mode}"] = lambda mode=mode: run_plain_loop(mode)
        for n in workers:
            found[f"pipeline, {n} worker{'s' * (n > 1)}, {mode}"] = lambda n=n, mode=mode: launch_and_collect(
                "--workers", str(n), "--blazepose-mode", mode)
    return found


def report(runs: dict[str, list[Run]], quiet: str, rounds: int) -> str:
    throughput = []
    for name, trials_ in runs.items():
        plain = runs[f"plain loop, {name.rsplit(', ', 1)[1]}"]
        e2e, steady = [r.end_to_end_fps for r in trials_], [r.steady_fps for r in trials_]
        throughput.append([
            name, spread(e2e), f"{median(e2e) / median(r.end_to_end_fps for r in plain):.2f}×",
            spread(steady), f"{median(steady) / median(r.steady_fps for r in plain):.2f}×",
            f"{median(1000 * r.cpu_s / len(r.finished) for r in trials_):.1f}",
            f"{median(r.steady_cpu_ms_per_frame for r in trials_):.1f}"])
    agreement = []
    for name, trials_ in runs.items():
        pairs = list(zip(trials_, runs[REFERENCE]))
        if name == REFERENCE:  # run-to-run repeatability of the reference itself
            pairs = list(zip(trials_[1:], trials_[:-1]))
            name = f"{REFERENCE} (another round)"
        if not pairs:
            continue
        distances = [keypoint_distance(run, reference) for run, reference in pairs]
        agreement.append([name, f"{median(d[0] for d in distances):.2f}", f"{median(d[1] for d in distances):.2f}",
                          f"{median(d[2] for d in distances):.0f}"])
    frames = len(runs[REFERENCE][0].finished)
    return "\n\n".join([
        "## Pipeline throughput: BlazePose on vid.mp4",
        f"{frames} frames of 1920×1088; {rounds} interleaved rounds, median (min–max). "
        "End to end: process start → last result (includes interpreter start-up, imports, model load; "
        "for the pipeline also stage start-up and the `job_end` hop). "
        f"Steady state: frame {WARM_UP_FRAMES} → last frame finished. Ratios are to the plain loop of the same mode. "
        "CPU: user + system time of all the run's processes per frame, over the whole run and in the steady "
        "state; CPU time is far less sensitive to other tenants than wall time. " + quiet,
        table(["run", "end-to-end fps", "÷ plain", "steady-state fps", "÷ plain", "CPU ms/frame",
               "steady CPU ms/frame"], throughput),
        f"### Agreement with the 1-worker video-mode pipeline\n\n"
        f"Mean 2D distance (px) between the runner's canonical keypoints (joints seen by both), per frame, then "
        f"mean and 95th percentile over frames; median over rounds. The runner is about "
        f"{body_height_px(runs[REFERENCE][0]):.0f} px tall.",
        table(["run", "mean px", "p95 px", "frames compared"], agreement),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["video", "static"], choices=["video", "static"])
    args = parser.parse_args()
    if "video" not in args.modes or 1 not in args.workers:
        parser.error(f"the agreement reference ({REFERENCE}) must be among the runs")
    runs, quiet = interleaved(trials(args.modes, args.workers), args.rounds)
    publish("pipeline", report(runs, quiet, args.rounds))


if __name__ == "__main__":
    main()
