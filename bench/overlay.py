"""The overlay video's encoder (outputs.overlay): H.264 through PyAV's libx264, which browsers play, per x264
preset, against OpenCV's MPEG-4 Part 2 (``mp4v``) writer it replaced, on the same drawn frames.

vid.mp4 (180 frames, 1920x1088) with its BlazePose results from one pipeline run: decoded, drawn
(``draw_frame``) and encoded, interleaved rounds; "decode + draw" alone says what the encoders add.
A job's ``job_end`` waits for its files, so this is time a backend waits when it asks for ``--overlay``.

    python -m bench.overlay
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from bench.timing import ROOT, VIDEO, free_port, interleaved, median, publish, spread, table
from outputs import overlay
from outputs.report import read_messages
from video.sources import open_source

ROUNDS = 3
PRESETS = ("ultrafast", "superfast", "veryfast")


def job_messages(folder: Path) -> list[dict]:
    """vid.mp4's published messages, from one run's --out file."""
    subprocess.run([sys.executable, "launch.py", str(VIDEO), "--job", "vid", "--out", str(folder), "--results",
                    f"tcp://127.0.0.1:{free_port()}", "--history", f"tcp://127.0.0.1:{free_port()}",
                    "--job-log", str(folder / "logs")], cwd=ROOT, check=True, capture_output=True, timeout=600)
    return read_messages(folder / "vid.jsonl")


class Mp4v:
    """OpenCV's writer, as outputs.overlay wrote before PyAV."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))

    def write(self, image) -> None:
        self.writer.write(image)

    def close(self) -> None:
        self.writer.release()


class H264(overlay.OverlayWriter):
    """outputs.overlay's writer with another x264 preset."""

    def __init__(self, path: Path, fps: float, width: int, height: int, preset: str):
        chosen = overlay.ENCODER_OPTIONS["preset"]
        overlay.ENCODER_OPTIONS["preset"] = preset
        try:
            super().__init__(path, fps, width, height)
        finally:
            overlay.ENCODER_OPTIONS["preset"] = chosen


def render(messages: list[dict], make_writer, path: Path) -> tuple[float, float]:
    """(seconds to decode, draw and write every frame, the file's MB); ``make_writer`` None: no file."""
    frames = {m["index"]: m for m in messages if m["type"] == "frame"}
    started = time.perf_counter()
    source = open_source(str(VIDEO))
    writer = None if make_writer is None else make_writer(path, source.info.fps, source.info.width,
                                                          source.info.height)
    for index, _pts_ms, image in source:
        drawn = overlay.draw_frame(image, frames[index])
        if writer is not None:
            writer.write(drawn)
    if writer is not None:
        writer.close()
    return time.perf_counter() - started, path.stat().st_size / 1e6 if writer is not None else 0.0


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        messages = job_messages(folder)
        count = sum(m["type"] == "frame" for m in messages)
        writers = {"decode + draw only": None, "mp4v (OpenCV, before)": Mp4v,
                   **{f"H.264 {preset}" + (" (chosen)" if preset == overlay.ENCODER_OPTIONS["preset"] else ""):
                      (lambda p, f, w, h, preset=preset: H264(p, f, w, h, preset)) for preset in PRESETS}}
        trials = {name: (lambda make=make, n=n: render(messages, make, folder / f"writer{n}.mp4"))
                  for n, (name, make) in enumerate(writers.items())}
        results, quiet = interleaved(trials, ROUNDS)
    base = median(seconds for seconds, _ in results["decode + draw only"])
    rows = []
    for name, runs in results.items():
        seconds = [s for s, _ in runs]
        encode = "" if writers[name] is None else f"{(median(seconds) - base) / count * 1000:.0f}"
        rows.append([name, spread(seconds), f"{median(seconds) / count * 1000:.0f}", encode,
                     f"{runs[0][1]:.1f}" if writers[name] is not None else "",
                     {None: "", Mp4v: "no"}.get(writers[name], "yes")])
    section = (
        "## Overlay video: H.264 (PyAV) against OpenCV's mp4v\n\n"
        f"vid.mp4 ({count} frames, 1920×1088) decoded, drawn with its BlazePose results and written, "
        f"{ROUNDS} interleaved rounds, median (min–max) s. {quiet} The encoder's share is the median less "
        "\"decode + draw only\". Browsers play H.264 in `<video>`, not MPEG-4 Part 2 "
        "(tests/test_outputs.py plays the pipeline's overlay in headless Chromium).\n\n"
        + table(["writer", "s", "ms/frame", "encoder ms/frame", "MB", "plays in a browser"], rows) + "\n")
    publish("overlay", section)


if __name__ == "__main__":
    main()
