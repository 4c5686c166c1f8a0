"""Uploads and result fetches over the control socket (launcher.uploads, launcher.results): how fast a clip's
bytes reach the spool, and a finished job's file comes back, per chunk size.

A real ``launch.py serve`` on this machine, the Python client's ``Control.upload`` and ``Control.output_chunks``
(what the Node client's ``upload`` and ``fetchOutput`` do too: one REQ/REP round trip per chunk), interleaved:
64 MiB of random bytes per upload trial, vid.mp4's overlay (written by its job) fetched over and over to
about as much per fetch trial; and, for scale, uploading vid.mp4 and fetching its overlay next to running its
whole job (submitted by path) on the same server.

    python -m bench.upload
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import zmq

from bench.timing import ROOT, VIDEO, free_port, interleaved, median, publish, spread, table
from bus import sockets
from bus.client import Control

MIB = 2**20
SIZE = 64 * MIB
CHUNKS = (256 * 1024, MIB, 4 * MIB, 8 * MIB)  # 8 MiB: the most a chunk may carry (launcher.uploads.CHUNK_BYTES)
ROUNDS = 5
JOB = "bench-upload-scale"


def main() -> None:
    control_endpoint, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    out = tempfile.mkdtemp(prefix="posebus-bench-upload-")
    server = subprocess.Popen([sys.executable, "launch.py", "serve", "--control", control_endpoint, "--results",
                               results, "--history", f"tcp://127.0.0.1:{free_port()}", "--overlay", out,
                               "--job-log", os.path.join(out, "logs"), "--log-level", "error"],
                              cwd=ROOT, stderr=subprocess.DEVNULL)
    control = Control(control_endpoint, timeout_ms=120_000)
    try:
        control.wait_until_ready(timeout_s=300)
        job_seconds = run_job(control, results)
        overlay = os.path.getsize(os.path.join(out, f"{JOB}.mp4"))
        fetches = max(1, round(SIZE / overlay))  # per trial: about SIZE bytes, as an upload trial
        data = os.urandom(SIZE)

        def upload(chunk: int):
            return lambda: timed(lambda: control.upload(data, name="bench.bin", chunk_bytes=chunk))

        def fetch(chunk: int):
            return lambda: timed(lambda: [b"".join(control.output_chunks(JOB, "overlay", chunk_bytes=chunk))
                                          for _ in range(fetches)])

        seconds, quiet = interleaved({**{("upload", chunk): upload(chunk) for chunk in CHUNKS},
                                      **{("fetch", chunk): fetch(chunk) for chunk in CHUNKS}}, ROUNDS)
        clip = VIDEO.read_bytes()
        clip_upload = [timed(lambda: control.upload(clip, name=VIDEO.name)) for _ in range(ROUNDS)]
        overlay_fetch = [timed(lambda: control.output_bytes(JOB, "overlay")) for _ in range(ROUNDS)]
    finally:
        control.close()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        shutil.rmtree(out, ignore_errors=True)
    moved = {"upload": SIZE, "fetch": fetches * overlay}
    rows = [[f"{chunk // 1024} KiB", *(spread([moved[way] / MIB / s for s in seconds[way, chunk]], "{:.0f}")
                                       for way in ("upload", "fetch"))] for chunk in CHUNKS]
    section = (
        "## Uploads and result fetches over the control socket\n\n"
        f"`Control.upload` of {SIZE // MIB} MiB of random bytes, and `Control.output_chunks` of vid.mp4's overlay "
        f"({overlay / MIB:.1f} MiB, written by its job) {fetches} times over, to and from a `launch.py serve` on "
        f"this machine (tcp on loopback; uploads spooled to the launcher's private folder, fetches read from "
        f"`--overlay`'s), {ROUNDS} interleaved rounds per direction and chunk size, median (min–max) MiB/s. "
        f"{quiet}\n\n"
        + table(["chunk", "upload MiB/s", "fetch MiB/s"], rows)
        + f"\n\nFor scale: uploading vid.mp4 ({len(clip) / MIB:.1f} MiB) takes {median(clip_upload) * 1000:.0f} ms "
        f"and fetching its overlay ({overlay / MIB:.1f} MiB) {median(overlay_fetch) * 1000:.0f} ms, both in the "
        f"clients' default 1 MiB chunks (medians of {ROUNDS}); its whole job (180 frames, BlazePose, one worker, "
        f"submitted by path, writing the overlay) takes {job_seconds:.1f} s on the same server, so the upload adds "
        f"{median(clip_upload) / job_seconds:.2%} and the fetch "
        f"{median(overlay_fetch) / job_seconds:.2%}.\n")
    publish("upload", section)


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_job(control: Control, results: str) -> float:
    """Seconds from submit to job_end of vid.mp4, submitted by path."""
    live = sockets.connect(zmq.Context.instance(), "results", results, topics=(f"{JOB}/".encode(),))
    try:
        time.sleep(0.5)  # the subscription reaches the XPUB
        started = time.perf_counter()
        control.submit(str(VIDEO), job=JOB)
        while sockets.receive(live, "results")["type"] != "job_end":
            pass
        return time.perf_counter() - started
    finally:
        live.close(linger=0)


if __name__ == "__main__":
    main()
