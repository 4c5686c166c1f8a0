"""Per-frame latency with the input paced like a 30 fps camera: ``python -m bench.latency``.

``launch.py vid.mp4 --realtime --workers N`` (BlazePose, video mode) with a
subscriber in this process. Each frame message carries ``time.time()`` stamps
from decode (``decoded``, just before the frame is sent), detect (``detected``)
and track (``published``); the subscriber adds ``received``. The first frames
also wait for the workers to load their model (decode starts pacing when the
job starts), so they are reported apart from the rest.
"""
from __future__ import annotations

import argparse

from bench.pipeline import WARM_UP_FRAMES, launch_and_collect
from bench.timing import interleaved, median, percentiles, publish, table

START_UP_FRAMES = 30  # the first second of video
SPANS = {  # label -> (from stamp, to stamp)
    "captured → received": ("captured", "received"),
    "decoded → detected": ("decoded", "detected"),
    "detected → published": ("detected", "published"),
    "decoded → published": ("decoded", "published"),
    "decoded → received": ("decoded", "received"),
}


def with_capture_times(frames: list[dict]) -> list[dict]:
    """Frames with ``captured``: when a live camera would have taken them (frame 0 decoded + pts)."""
    origin = frames[0]["timestamps"]["decoded"] - frames[0]["pts_ms"] / 1000
    return [{**f, "captured": origin + f["pts_ms"] / 1000} for f in frames]


def span_ms(frame: dict, start: str, end: str) -> float:
    stamps = {**frame["timestamps"], "received": frame["received"], "captured": frame["captured"]}
    return 1000 * (stamps[end] - stamps[start])


def rows_for(name: str, frames: list[dict]) -> list[list]:
    """One row per span: p50 / p95 after start-up, and the worst of the start-up frames."""
    steady = [f for f in frames if f["index"] >= START_UP_FRAMES]
    start_up = [f for f in frames if f["index"] < START_UP_FRAMES]
    rows = []
    for label, (start, end) in SPANS.items():
        p50, p95 = percentiles([span_ms(f, start, end) for f in steady], 50, 95)
        worst = max(span_ms(f, start, end) for f in start_up)
        rows.append([name, label, f"{p50:.1f}", f"{p95:.1f}", f"{worst:.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    trials = {f"{n} worker{'s' * (n > 1)}": lambda n=n: launch_and_collect("--realtime", "--workers", str(n))
              for n in args.workers}
    runs, quiet = interleaved(trials, args.rounds)
    rows = [row for name, trials_ in runs.items()
            for row in rows_for(name, [f for r in trials_ for f in with_capture_times(r.frames)])]
    frames = len(next(iter(runs.values()))[0].frames)
    rates = ", ".join(f"{name} {median(r.steady_fps for r in trials_):.1f} fps" for name, trials_ in runs.items())
    publish("latency", "\n\n".join([
        "## Latency at 30 fps input (`launch.py --realtime`)",
        f"BlazePose video mode, {frames} frames per run, {args.rounds} interleaved rounds, frames of all rounds "
        f"pooled. p50/p95 over frames {START_UP_FRAMES}+; the start-up column is the worst of frames "
        f"0–{START_UP_FRAMES - 1}, which also wait for the workers to start. Stamps are `time.time()` "
        f"in each process on one machine. `decoded` is stamped when decode reads the frame, which is late when "
        "decode is held back by full queues; `captured` is when a live camera would have taken it "
        f"(frame 0's `decoded` + pts), so captured → received shows the pipeline falling behind. {quiet}",
        table(["workers", "span", "p50 ms", "p95 ms", "start-up worst ms"], rows),
        f"Output rate (frame {WARM_UP_FRAMES} → last published, median over rounds): {rates}. Below the 30 fps "
        "input the pipeline falls behind: nothing is dropped, so latency from capture grows through the run.",
    ]))


if __name__ == "__main__":
    main()
