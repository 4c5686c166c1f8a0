"""Several jobs at once on one pipeline: ``python -m bench.concurrency``.

One ``launch.py serve --workers 2 --max-jobs 4`` (BlazePose, the default detector) serves every
trial, warm (start-up is not in any time). A job's completion time runs from its submission to
its ``job_end`` received by a subscriber in this process. Trials, interleaved over rounds:

- ``1 job``: vid.mp4 alone; its completion time is the solo time, 180 / it the solo throughput;
- ``2 jobs``, ``4 jobs``: that many copies of vid.mp4 submitted together; total throughput is
  N × 180 frames over the time to the last job_end;
- ``short alone``: the first ``SHORT_FRAMES`` frames of vid.mp4 (an image folder of JPEG files);
- ``short behind long``: vid.mp4, then the short job ``SHORT_DELAY_S`` later.

The issue's marks (issue 15): N jobs' total throughput ≥ 0.95 × one job's; each job done within
1.2 × N × solo; a short job behind a long one within 2 × its solo time.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from bench.timing import ROOT, VIDEO, free_port, interleaved, median, process_tree_cpu_seconds, publish, spread, table
from bus.client import Control, subscribe

FRAMES = 180  # vid.mp4
SHORT_FRAMES = 30
SHORT_DELAY_S = 0.5
WORKERS = 2
MAX_JOBS = 4
TIMEOUT_MS = 600_000


@dataclass
class Run:
    """One trial: each job's (submitted, ended) times, and the CPU seconds every pipeline process used."""

    times: dict[str, tuple[float, float]]
    cpu_s: float


class Server:
    """``launch.py serve`` on free ports, with one subscriber to every job's results."""

    def __init__(self, *options: str):
        self.results, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [sys.executable, "launch.py", "serve", "--results", self.results, "--control", control,
             "--history", f"tcp://127.0.0.1:{free_port()}", "--metrics", f"tcp://127.0.0.1:{free_port()}",
             "--workers", str(WORKERS), "--max-jobs", str(MAX_JOBS), "--log-level", "error", *options],
            cwd=ROOT)
        self.control = Control(control, timeout_ms=30_000)
        self.stream = subscribe(self.results, timeout_ms=TIMEOUT_MS)
        self.count = 0

    def ready(self) -> None:
        """Wait until every stage has sent a heartbeat (the workers have loaded their model)."""
        while not all(p["since_heartbeat_s"] is not None for p in self.control.health()["processes"].values()):
            time.sleep(0.2)

    def run(self, sources: list[tuple[str, float]]) -> Run:
        """Submit each (source, delay after the previous submission); when each job was submitted and ended,
        after checking every job published all its frames in order."""
        submitted, frames = {}, {}
        cpu_before = process_tree_cpu_seconds(self.process.pid)
        for source, delay in sources:
            time.sleep(delay)
            self.count += 1
            job = f"bench-{self.count}"
            submitted[job] = time.monotonic()
            self.control.submit(source, job=job)
            frames[job] = 0
        ended = {}
        for message in self.stream:
            job = message["job"]
            if job not in submitted:
                continue
            if message["type"] == "frame":
                assert message["index"] == frames[job], f"{job}: frame {message['index']} after {frames[job]}"
                frames[job] += 1
            elif message["type"] == "job_end":
                assert message["status"] == "ok", message
                ended[job] = time.monotonic()
                if len(ended) == len(submitted):
                    break
        return Run({job: (submitted[job], ended[job]) for job in submitted},
                   process_tree_cpu_seconds(self.process.pid) - cpu_before)

    def close(self) -> None:
        self.stream.close()
        self.control.close()
        self.process.terminate()
        self.process.wait(30)


def short_clip(folder: Path) -> str:
    capture = cv2.VideoCapture(str(VIDEO))
    for index in range(SHORT_FRAMES):
        cv2.imwrite(str(folder / f"{index:03d}.jpg"), capture.read()[1])
    capture.release()
    return str(folder)


def measure(rounds: int, copies: tuple[int, ...], max_wait_s: float | None = 10.0, server_options=(),
            video: str = str(VIDEO), frames: int = FRAMES):
    """Every trial on one warm server, ``rounds`` times; trial -> [job -> (submitted, ended)] per round."""
    server = Server(*server_options)
    try:
        server.ready()
        with tempfile.TemporaryDirectory() as folder:
            short = short_clip(Path(folder))
            server.run([(short, 0.0)])  # warm-up: every worker has seen a frame
            trials = {f"{n} job{'s' * (n > 1)}": (lambda n=n: server.run([(video, 0.0)] * n)) for n in copies}
            trials["short alone"] = lambda: server.run([(short, 0.0)])
            trials["short behind long"] = lambda: server.run([(video, 0.0), (short, SHORT_DELAY_S)])
            results, quiet = interleaved(trials, rounds, max_wait_s)
    finally:
        server.close()
    return results, quiet


def completion(run: Run) -> list[float]:
    return [end - start for start, end in run.times.values()]


def report(results: dict, quiet: str, rounds: int, frames: int = FRAMES) -> str:
    solo = [completion(run)[0] for run in results["1 job"]]
    solo_s = median(solo)
    solo_fps = frames / solo_s
    rows = []
    for trial, runs in results.items():
        if not trial.endswith(("job", "jobs")):
            continue
        n = len(runs[0].times)
        throughput = [n * frames / (max(end for _, end in run.times.values()) -
                                    min(s for s, _ in run.times.values())) for run in runs]
        slowest = [max(completion(run)) for run in runs]
        fastest = [min(completion(run)) for run in runs]
        cpu_ms = [1000 * run.cpu_s / (n * frames) for run in runs]
        rows.append([n, spread(throughput), f"{median(throughput) / solo_fps:.2f}",
                     spread(fastest), spread(slowest), f"{n * solo_s:.1f}",
                     f"{median(slowest) / (n * solo_s):.2f}", spread(cpu_ms)])
    short_solo = median(completion(run)[0] for run in results["short alone"])
    behind = [completion(run)[1] for run in results["short behind long"]]
    long_behind = [completion(run)[0] for run in results["short behind long"]]
    return "\n\n".join([
        "## Several jobs at once (`launch.py serve --max-jobs 4 --workers 2`)",
        f"BlazePose (video mode, the default), copies of vid.mp4 ({frames} frames) submitted together to one warm "
        f"`serve`; median (min–max) over {rounds} interleaved rounds. A job's time runs from its submission to its "
        f"job_end received. Frames are dealt out live jobs first, then the least served job first (in turn, one "
        f"frame each, for jobs submitted together; `stages.decode.FairFrames`). CPU: user + system seconds of "
        f"every pipeline process over the trial, per frame: what the work costs whatever the other tenants take "
        f"of the 2 cores. {quiet}",
        table(["jobs", "total fps", "÷ 1 job", "first job done s", "last job done s", "N × solo s",
               "last ÷ (N × solo)", "pipeline CPU ms/frame"], rows),
        f"A short job ({SHORT_FRAMES} frames) submitted {SHORT_DELAY_S} s behind vid.mp4: done in "
        f"{spread(behind)} s, alone {short_solo:.1f} s: {median(behind) / short_solo:.2f}× its solo time "
        f"(the long job beside it: {spread(long_behind)} s, alone {solo_s:.1f} s). "
        "Before issue 15 `serve` ran jobs one after another: three copies of vid.mp4 finished at 4.0, 7.5 and "
        "10.9 s (one alone 3.5 s), and the short job would have waited for the whole long one.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results, quiet = measure(args.rounds, (1, 2, 4))
    publish("concurrency", report(results, quiet, args.rounds))


if __name__ == "__main__":
    main()
