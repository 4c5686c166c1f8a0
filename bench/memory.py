"""Bounded-memory bench: ``python -m bench.memory [--only long|stalled]`` (writes bench/results/memory.md).

1. A long job: the clip scaled to 320×180 and looped to 20,000 frames (MJPG
   AVI), run through ``launch.py`` with BlazePose and one worker while a
   subscriber reads every result. Each process's RSS (launcher, decode,
   detect, track) is read from /proc once a second; the table gives it at
   frame 500 (after warm-up), at the end, and the largest growth past warm-up.
2. A stalled subscriber: the clip looped to 25,000 frames, with a second SUB
   that subscribes before the job starts and reads nothing until near the end.
   The results XPUB queues up to its high-water mark per subscriber and drops
   that subscriber's live messages beyond it, so the normal reader should get
   every frame in order at an unchanged rate and the track stage's RSS should
   grow by at most HWM × message size, then hold still. When the stalled SUB
   finally reads, the bench reports what it got (its backlog, then a gap),
   and asks the history link (the job's log) for the frames it lost.
"""
from __future__ import annotations

import argparse
import os
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

from bench.spooled import Spooled
from bench.timing import free_port
from bus import client, codec, sockets

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "media" / "vid.mp4"
RESULT = ROOT / "bench" / "results" / "memory.md"
SIZE = (320, 180)
LONG_FRAMES = 20_000
WARM_UP_FRAME = 500
GROWTH_TARGET_MB = 50
STAGES = ("launcher", "decode", "detect", "track")
PROCESSES = (*STAGES, "subscribers")  # table rows; "subscribers" is the bench itself
# Past the stalled subscriber's 2 × HWM results (its own queue and the track stage's queue for it),
# long enough to see memory hold still while its live messages are dropped.
STALLED_FRAMES = 25_000
FULL_MARGIN_FRAMES = 1_000  # frames past 2 × HWM before both queues surely are full (track events count too)
DRAIN_MARGIN_FRAMES = 1_000  # the stalled subscriber reads this long before the job ends: history still answers


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
    """Reads every result; remembers the newest frame, when it came, and whether frames came in order."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        super().__init__(daemon=True)
        self.sock = sockets.connect(ctx, "results", endpoint)  # one subscription, as --wait-subscribers counts
        self.job: str | None = None
        self.latest_index = -1
        self.latest_at = time.monotonic()
        self.out_of_order = 0  # frames whose index is not the previous one's + 1
        self.longest_pause_s = 0.0  # between two frames
        self.ended = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(200):
                continue
            message = codec.decode(self.sock.recv_multipart()[1:])
            if message["type"] == "job_end":
                self.ended.set()
            elif message["type"] == "frame":
                now = time.monotonic()
                if self.latest_index >= 0:
                    self.longest_pause_s = max(self.longest_pause_s, now - self.latest_at)
                self.out_of_order += message["index"] != self.latest_index + 1
                self.job, self.latest_index, self.latest_at = message["job"], message["index"], now
        self.sock.close(linger=0)

    def summary(self) -> str:
        return (f"The reader got {self.latest_index + 1} frames, {self.out_of_order} out of order; "
                f"longest pause between two frames {self.longest_pause_s:.1f} s.")


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
def launcher_running(video: Path, results: str, history: str, subscribers: int) -> Iterator[subprocess.Popen]:
    """``launch.py VIDEO``; stopped with SIGTERM (SIGINT may be ignored in a background job) if still running."""
    launcher = Spooled([sys.executable, "launch.py", str(video), "--results", results, "--history", history,
                        "--log-level", "error", "--wait-subscribers", str(subscribers)], cwd=ROOT, text=True)
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
    return f"tcp://127.0.0.1:{free_port()}"


def stop_watching(ctx: zmq.Context, *watchers: Sampler | ResultReader) -> None:
    """Stop and join the bench's threads, then its sockets."""
    for watcher in watchers:
        watcher.stop.set()
    for watcher in watchers:
        watcher.join()
    ctx.destroy(linger=0)


def rss_table(samples: list[Sample], end_label: str) -> str:
    """Per stage: RSS at warm-up, at the end, the peak, and growth from warm-up to peak."""
    warm = next((s for s in samples if s.frame >= WARM_UP_FRAME), samples[0])
    lines = [f"| process | RSS at frame {warm.frame} (MB) | last RSS {end_label} (MB) | peak after warm-up (MB) | "
             "growth (MB) |", "|---|---|---|---|---|"]
    for stage in PROCESSES:
        after = [s.rss[stage] for s in samples if s.seconds >= warm.seconds and stage in s.rss]
        if stage not in warm.rss or not after:
            continue
        growth = max(after) - warm.rss[stage]
        flag = " ⚠" if growth > GROWTH_TARGET_MB and stage in STAGES else ""
        lines.append(f"| {stage} | {warm.rss[stage]:.1f} | {after[-1]:.1f} | {max(after):.1f} | {growth:+.1f}{flag} |")
    return "\n".join(lines)


def run_summary(launcher: subprocess.Popen, stderr: str, reader: ResultReader, wall: float, samples: int) -> str:
    frames = reader.latest_index + 1
    return (f"Launcher exit {launcher.returncode}; {frames} frames published in {wall:.0f} s "
            f"({frames / wall:.1f} fps, start-up included); {samples} samples, one a second.\n"
            f"{stderr.strip().splitlines()[-1] if stderr.strip() else ''}\n")


def long_job(video: Path) -> str:
    ctx, endpoint = zmq.Context(), free_endpoint()
    started = time.monotonic()
    with launcher_running(video, endpoint, free_endpoint(), subscribers=1) as launcher:
        reader = ResultReader(ctx, endpoint)
        reader.start()
        sampler = Sampler(wait_for_stages(launcher), reader)
        sampler.start()
        stderr = launcher.communicate()[1]
    wall = time.monotonic() - started
    stop_watching(ctx, sampler, reader)
    return (f"## Long job: {LONG_FRAMES} frames, {SIZE[0]}×{SIZE[1]} MJPG, BlazePose (video mode), 1 worker\n\n"
            + run_summary(launcher, stderr, reader, wall, len(sampler.samples)) + f"{reader.summary()}\n\n"
            + rss_table(sampler.samples, "at the end")
            + f"\n\nTarget: growth within +{GROWTH_TARGET_MB} MB.\n")


def wait_for_frame(reader: ResultReader, index: int) -> None:
    while reader.latest_index < index:
        if reader.ended.is_set():
            raise RuntimeError(f"the job ended at frame {reader.latest_index}, before frame {index}")
        time.sleep(0.5)


@dataclass
class Backlog:
    """What a subscriber that stopped reading finds once it reads again."""

    frames: list[int]  # frame indices, in arrival order
    messages: int
    mean_bytes: float  # per message, topic included

    @classmethod
    def read(cls, sock: zmq.Socket, until_index: int) -> Backlog:
        """Read ``sock`` until it delivers frame ``until_index`` or later (or goes quiet for 10 s)."""
        frames, messages, total_bytes = [], 0, 0
        while (not frames or frames[-1] < until_index) and sock.poll(10_000):
            parts = sock.recv_multipart()
            messages, total_bytes = messages + 1, total_bytes + sum(map(len, parts))
            message = codec.decode(parts[1:])
            if message["type"] == "frame":
                frames.append(message["index"])
        return cls(frames, messages, total_bytes / max(messages, 1))

    def gaps(self) -> list[tuple[int, int]]:
        """(first missing frame, next frame received) wherever the indices jump."""
        return [(a + 1, b) for a, b in zip([-1, *self.frames], self.frames) if b != a + 1]


def refill(ctx: zmq.Context, history: str, job: str, first: int, stop: int) -> list[int]:
    """Frame indices ``first`` .. ``stop - 1`` as the history link (the job's log) returns them."""
    log = sockets.connect(ctx, "history", history)
    log.rcvtimeo = 30_000  # a bench must not hang if the job ended and the link went away
    found_frames = []
    try:
        while first < stop:
            found, end = client.replay(log, job, first)
            found_frames += [m["index"] for m in found if m["type"] == "frame" and m["index"] < stop]
            if end["next"] <= first:
                break
            first = end["next"]
    finally:
        log.close(linger=0)
    return found_frames


def at_frame(samples: list[Sample], frame: int) -> Sample:
    """The first sample taken once ``frame`` had been published."""
    return next(s for s in samples if s.frame >= frame)


def fps_between(samples: list[Sample], first: int, last: int) -> float:
    start, end = at_frame(samples, first), at_frame(samples, last)
    return (end.frame - start.frame) / (end.seconds - start.seconds)


def stalled_subscriber(video: Path) -> str:
    """The stalled video with a second SUB that reads nothing until near the end, then catches up."""
    hwm = sockets.LINKS["results"].hwm
    # The stalled SUB holds up to `hwm` messages itself (its RCVHWM), the track stage `hwm` more for it
    # (SNDHWM); past that the track stage drops its live messages. Frames from full_from on find both full.
    queueing_from, full_from, drain_at = hwm, 2 * hwm + FULL_MARGIN_FRAMES, STALLED_FRAMES - DRAIN_MARGIN_FRAMES
    ctx, results, history = zmq.Context(), free_endpoint(), free_endpoint()
    started = time.monotonic()
    with launcher_running(video, results, history, subscribers=2) as launcher:
        reader = ResultReader(ctx, results)
        reader.start()
        stalled = sockets.connect(ctx, "results", results)  # subscribes to everything, reads nothing yet
        sampler = Sampler(wait_for_stages(launcher) | {"subscribers": os.getpid()}, reader)
        sampler.start()
        wait_for_frame(reader, drain_at)
        held = [s for s in sampler.samples if s.frame >= full_from]
        subscribers_before_read = held[-1].rss["subscribers"]
        read_started = time.monotonic()
        backlog = Backlog.read(stalled, until_index=reader.latest_index)
        read_s = time.monotonic() - read_started
        stalled.close(linger=0)
        gaps = backlog.gaps()
        lost = gaps[0] if gaps else None
        refill_started = time.monotonic()
        refilled = refill(ctx, history, reader.job, *lost) if lost else []
        refill_s = time.monotonic() - refill_started
        stderr = launcher.communicate()[1]
    wall = time.monotonic() - started
    stop_watching(ctx, sampler, reader)
    samples = sampler.samples
    track_before = at_frame(samples, queueing_from).rss["track"]
    track_peak = max(s.rss["track"] for s in samples if s.frame >= queueing_from and "track" in s.rss)
    track_held = [s.rss["track"] for s in held]
    bound_mb = hwm * backlog.mean_bytes / 1e6
    if lost:
        outcome = (f"- When it read (at frame {drain_at}, {read_s:.1f} s): {backlog.messages} messages, frames "
                   f"{backlog.frames[0]}–{lost[0] - 1} in order, then a gap to frame {lost[1]} "
                   f"({lost[1] - lost[0]} frames lost), then live frames; {len(gaps)} gap(s) in all.\n"
                   f"- Refill from the job log (history link, `bus.client.replay`): {len(refilled)} of the "
                   f"{lost[1] - lost[0]} lost frames in {refill_s:.1f} s"
                   f"{', all of them, in order' if refilled == list(range(*lost)) else ''}.\n")
    else:
        outcome = (f"- When it read (at frame {drain_at}): {backlog.messages} messages, {len(backlog.frames)} "
                   "frames, no gap: nothing was dropped for it.\n")
    return (f"## Stalled subscriber: {STALLED_FRAMES} frames (same set-up), a second SUB that stops reading\n\n"
            f"The second SUB subscribes to everything before the job starts and reads nothing until the normal "
            f"reader has frame {drain_at}; then it reads its backlog and asks the history link for what it lost. "
            f"Results high-water mark: {hwm} messages per subscriber, on each side of the link.\n\n"
            + run_summary(launcher, stderr, reader, wall, len(samples)) + "\n"
            f"- {reader.summary()} Frames/s: {fps_between(samples, WARM_UP_FRAME, queueing_from):.1f} "
            f"while the stalled SUB's own queue filled (frames {WARM_UP_FRAME}–{queueing_from}), "
            f"{fps_between(samples, queueing_from, 2 * hwm):.1f} while the track stage queued for it "
            f"({queueing_from}–{2 * hwm}), {fps_between(samples, full_from, drain_at):.1f} once both queues were full "
            f"and its live messages were dropped ({full_from}–{drain_at}).\n"
            f"- Track stage RSS: {track_before:.1f} MB at frame {queueing_from}, peak {track_peak:.1f} MB "
            f"(+{track_peak - track_before:.1f} MB). Expected bound: {hwm} messages × {backlog.mean_bytes:.0f} "
            f"bytes (the backlog's mean message) = {bound_mb:.1f} MB, plus ZeroMQ's per-message overhead. "
            f"Once full (frames {full_from}–{drain_at}, {len(held)} samples) its RSS moved by "
            f"{max(track_held) - min(track_held):.1f} MB (max − min).\n"
            + outcome
            + f"- This bench's process (`subscribers`: both SUBs) had {subscribers_before_read:.1f} MB just before "
              f"the stalled SUB read, its own queue of up to {hwm} messages included; what it gained after that "
              "came while it decoded the backlog and the refill (Python objects, not the pipeline).\n\n"
            + rss_table(samples, "at the end") + "\n")


SECTIONS = {"long": (LONG_FRAMES, long_job), "stalled": (STALLED_FRAMES, stalled_subscriber)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SECTIONS, help="run this section alone (default: all)")
    args = parser.parse_args()
    report = "# Memory bench\n\n" + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + "\n\n"
    with tempfile.TemporaryDirectory(prefix="posebus-bench-") as folder:
        for name in [args.only] if args.only else SECTIONS:
            frames, section = SECTIONS[name]
            report += section(write_looped_video(Path(folder) / f"{name}.avi", frames)) + "\n"
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
