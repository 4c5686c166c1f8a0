"""Bounded-memory bench: ``python -m bench.memory`` (writes bench/results/memory.md).

1. A long job: the clip scaled to 320×180 and looped to 20,000 frames (MJPG
   AVI), run through ``launch.py`` with BlazePose and one worker while a
   subscriber reads every result. Each process's RSS (launcher, decode,
   detect, track) is read from /proc once a second; the table gives it at
   frame 500 (after warm-up), at the end, and the largest growth past warm-up.
2. A stalled subscriber: the same with a second SUB that connects and never
   reads (the results XPUB has XPUB_NODROP, so the publisher blocks once that
   subscriber's queues are full). Shows where the pipeline stops, whether
   memory stays flat while it is stuck, and whether it resumes once the
   stalled subscriber disconnects; the launcher is stopped after that.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import zmq

from bus import codec, sockets

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "media" / "vid.mp4"
RESULT = ROOT / "bench" / "results" / "memory.md"
SIZE = (320, 180)
LONG_FRAMES = 20_000
WARM_UP_FRAME = 500
GROWTH_TARGET_MB = 50
STAGES = ("launcher", "decode", "detect", "track")
STALL_HOLD_S = 20  # how long the bench watches a stuck pipeline
NO_PROGRESS_S = 10  # no new frame for this long counts as stuck
RESUMED_FRAMES = 100  # frames after the stalled subscriber leaves that count as resumed


def write_looped_video(path: Path, frames: int) -> Path:
    """The clip scaled to SIZE, looped to ``frames`` frames, as an MJPG AVI."""
    capture = cv2.VideoCapture(str(VIDEO))
    clip = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        clip.append(cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    for i in range(frames):
        writer.write(clip[i % len(clip)])
    writer.release()
    return path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stage_pids(launcher: int) -> dict[str, int]:
    """The launcher and its stage processes, by stage name."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(launcher)], capture_output=True, text=True).stdout
    pids = {"launcher": launcher}
    for pid in map(int, out.split()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
        except OSError:
            continue
        for stage in STAGES[1:]:
            if f"stages.{stage}".encode() in command:
                pids[stage] = pid
    return pids


class ResultReader(threading.Thread):
    """Reads the results socket and remembers the newest frame index and when it came."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        super().__init__(daemon=True)
        self.sock = sockets.connect(ctx, "results", endpoint, topics=(b"frame/", b"job_end/"))
        self.latest_index = -1
        self.latest_at = time.monotonic()
        self.ended = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(200):
                continue
            message = codec.decode(self.sock.recv_multipart()[1:])
            if message["type"] == "job_end":
                self.ended.set()
            else:
                self.latest_index, self.latest_at = message["index"], time.monotonic()
        self.sock.close(linger=0)


@dataclass
class Sample:
    seconds: float
    frame: int
    rss: dict[str, float]


@dataclass(eq=False)  # a Thread must stay hashable
class Sampler(threading.Thread):
    """RSS of every stage once a second, tagged with the newest published frame."""

    pids: dict[str, int]
    reader: ResultReader
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        super().__init__(daemon=True)
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            rss = {name: rss_mb(pid) for name, pid in self.pids.items()}
            self.samples.append(Sample(time.monotonic() - self.started, self.reader.latest_index,
                                       {k: v for k, v in rss.items() if v is not None}))


@contextmanager
def launcher_running(video: Path, endpoint: str, subscribers: int) -> Iterator[subprocess.Popen]:
    """``launch.py VIDEO``; stopped with SIGTERM (SIGINT may be ignored in a background job) if still running."""
    launcher = subprocess.Popen([sys.executable, "launch.py", str(video), "--results", endpoint, "--log-level",
                                 "error", "--wait-subscribers", str(subscribers)], cwd=ROOT, stderr=subprocess.PIPE,
                                text=True)
    try:
        yield launcher
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
        launcher.communicate(timeout=30)


def wait_for_stages(launcher: subprocess.Popen) -> dict[str, int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = stage_pids(launcher.pid)
        if len(pids) == len(STAGES):
            return pids
        time.sleep(0.2)
    raise RuntimeError(f"stages did not start: {stage_pids(launcher.pid)}")


def free_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def rss_table(samples: list[Sample], end_label: str) -> str:
    """Per stage: RSS at warm-up, at the end, the peak, and growth from warm-up to peak."""
    warm = next((s for s in samples if s.frame >= WARM_UP_FRAME), samples[0])
    lines = [f"| process | RSS at frame {warm.frame} (MB) | last RSS {end_label} (MB) | peak after warm-up (MB) | "
             "growth (MB) |", "|---|---|---|---|---|"]
    for stage in STAGES:
        after = [s.rss[stage] for s in samples if s.seconds >= warm.seconds and stage in s.rss]
        if stage not in warm.rss or not after:
            continue
        growth = max(after) - warm.rss[stage]
        flag = "" if growth <= GROWTH_TARGET_MB else " ⚠"
        lines.append(f"| {stage} | {warm.rss[stage]:.1f} | {after[-1]:.1f} | {max(after):.1f} | {growth:+.1f}{flag} |")
    return "\n".join(lines)


def long_job(video: Path) -> str:
    ctx, endpoint = zmq.Context(), free_endpoint()
    started = time.monotonic()
    with launcher_running(video, endpoint, subscribers=1) as launcher:
        reader = ResultReader(ctx, endpoint)
        reader.start()
        sampler = Sampler(wait_for_stages(launcher), reader)
        sampler.start()
        stderr = launcher.stderr.read()
        launcher.wait()
    wall = time.monotonic() - started
    sampler.stop.set(), reader.stop.set()
    sampler.join(), reader.join()
    ctx.destroy(linger=0)
    frames = reader.latest_index + 1
    return (f"## Long job: {LONG_FRAMES} frames, {SIZE[0]}×{SIZE[1]} MJPG, BlazePose (video mode), 1 worker\n\n"
            f"Launcher exit {launcher.returncode}; {frames} frames published in {wall:.0f} s "
            f"({frames / wall:.1f} fps, start-up included); {len(sampler.samples)} samples, one a second.\n"
            f"{stderr.strip().splitlines()[-1] if stderr.strip() else ''}\n\n"
            + rss_table(sampler.samples, "at the end")
            + f"\n\nTarget: growth within +{GROWTH_TARGET_MB} MB.\n")


def wait_until_stuck(reader: ResultReader, deadline_s: float) -> bool:
    """True once no frame has arrived for NO_PROGRESS_S (False if the job ended or time ran out)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not reader.ended.is_set():
        if reader.latest_index >= 0 and time.monotonic() - reader.latest_at > NO_PROGRESS_S:
            return True
        time.sleep(0.5)
    return False


def wait_for_frames(reader: ResultReader, after: int, count: int, timeout_s: float) -> float | None:
    """Seconds until ``count`` frames past ``after`` arrived (or the job ended), None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if reader.latest_index >= after + count or reader.ended.is_set():
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def rss_spread(samples: list[Sample]) -> str:
    spreads = {stage: [s.rss[stage] for s in samples if stage in s.rss] for stage in STAGES}
    return ", ".join(f"{stage} {max(v) - min(v):.1f} MB" for stage, v in spreads.items() if v)


def stalled_subscriber(video: Path) -> str:
    """The long video with a second SUB that never reads: watch it stick, then let the SUB go."""
    ctx, endpoint = zmq.Context(), free_endpoint()
    with launcher_running(video, endpoint, subscribers=2) as launcher:
        reader = ResultReader(ctx, endpoint)
        reader.start()
        stalled = sockets.connect(ctx, "results", endpoint)  # subscribes to everything, never reads
        sampler = Sampler(wait_for_stages(launcher), reader)
        sampler.start()
        stuck = wait_until_stuck(reader, deadline_s=900)
        stuck_frame, stuck_from = reader.latest_index, len(sampler.samples)
        time.sleep(STALL_HOLD_S if stuck else 0)
        held = sampler.samples[stuck_from:]
        moved_while_held = reader.latest_index - stuck_frame
        stalled.close(linger=0)
        resume_s = wait_for_frames(reader, reader.latest_index, RESUMED_FRAMES, timeout_s=60)
        sampler.stop.set(), reader.stop.set()
        sampler.join(), reader.join()
    ctx.destroy(linger=0)
    if not stuck:
        outcome = f"- Not stuck: the job ran to frame {reader.latest_index} without a {NO_PROGRESS_S} s pause.\n"
    else:
        outcome = (f"- Stuck at frame {stuck_frame}: no frame for {NO_PROGRESS_S} s, then {moved_while_held} "
                   f"frames in the next {STALL_HOLD_S} s.\n"
                   f"- RSS spread while stuck (max − min over {len(held)} samples): {rss_spread(held)}.\n"
                   + (f"- After the stalled SUB closed, {RESUMED_FRAMES} more frames arrived within {resume_s:.1f} s.\n"
                      if resume_s is not None else "- After the stalled SUB closed, the pipeline did not resume "
                                                   "within 60 s.\n"))
    return (f"## Stalled subscriber: a second SUB that connects and never reads\n\n{outcome}\n"
            + rss_table(sampler.samples, "before the launcher was stopped") + "\n")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posebus-bench-") as folder:
        long_video = write_looped_video(Path(folder) / "long.avi", LONG_FRAMES)
        report = "# Memory bench\n\n" + long_job(long_video) + "\n" + stalled_subscriber(long_video)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
