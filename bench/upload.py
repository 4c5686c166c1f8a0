"""Uploads over the control socket (launcher.uploads): how fast a clip's bytes reach the spool, per chunk size.

A real ``launch.py serve`` on this machine, the Python client's ``Control.upload`` (what the Node client's
``upload`` does too: one REQ/REP round trip per chunk), 64 MiB of random bytes per trial; and, for scale,
uploading vid.mp4 next to running its whole job (submitted by path) on the same server.

    python -m bench.upload
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import zmq

from bench.timing import ROOT, VIDEO, free_port, interleaved, median, publish, spread, table
from bus import sockets
from bus.client import Control

MIB = 2**20
SIZE = 64 * MIB
CHUNKS = (256 * 1024, MIB, 4 * MIB, 8 * MIB)  # 8 MiB: the most a chunk may carry (launcher.uploads.CHUNK_BYTES)
ROUNDS = 5


def main() -> None:
    control_endpoint, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen([sys.executable, "launch.py", "serve", "--control", control_endpoint, "--results",
                               results, "--history", f"tcp://127.0.0.1:{free_port()}", "--log-level", "error"],
                              cwd=ROOT, stderr=subprocess.DEVNULL)
    control = Control(control_endpoint, timeout_ms=120_000)
    try:
        control.wait_until_ready(timeout_s=300)
        data = os.urandom(SIZE)

        def upload(chunk: int):
            return lambda: timed(lambda: control.upload(data, name="bench.bin", chunk_bytes=chunk))

        seconds, quiet = interleaved({f"{chunk // 1024} KiB": upload(chunk) for chunk in CHUNKS}, ROUNDS)
        clip = VIDEO.read_bytes()
        clip_upload = [timed(lambda: control.upload(clip, name=VIDEO.name)) for _ in range(ROUNDS)]
        job_seconds = run_job(control, results)
    finally:
        control.close()
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    rows = [[name, spread([SIZE / MIB / s for s in values], "{:.0f}"), spread([s * 1000 for s in values], "{:.0f}")]
            for name, values in seconds.items()]
    section = (
        "## Uploads over the control socket\n\n"
        f"`Control.upload` of {SIZE // MIB} MiB of random bytes to a `launch.py serve` on this machine (tcp on "
        f"loopback, spooled to the launcher's private folder), {ROUNDS} interleaved rounds per chunk size, "
        f"median (min–max). {quiet}\n\n"
        + table(["chunk", "MiB/s", "ms per 64 MiB"], rows)
        + f"\n\nFor scale: uploading vid.mp4 ({len(clip) / MIB:.1f} MiB, 1 MiB chunks, the clients' default) takes "
        f"{median(clip_upload) * 1000:.0f} ms (median of {ROUNDS}); its whole job (180 frames, BlazePose, one worker, "
        f"submitted by path) takes {job_seconds:.1f} s on the same server, so the upload adds "
        f"{median(clip_upload) / job_seconds:.1%}.\n")
    publish("upload", section)


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_job(control: Control, results: str) -> float:
    """Seconds from submit to job_end of vid.mp4, submitted by path."""
    live = sockets.connect(zmq.Context.instance(), "results", results, topics=(b"bench-upload-scale/",))
    try:
        time.sleep(0.5)  # the subscription reaches the XPUB
        started = time.perf_counter()
        control.submit(str(VIDEO), job="bench-upload-scale")
        while sockets.receive(live, "results")["type"] != "job_end":
            pass
        return time.perf_counter() - started
    finally:
        live.close(linger=0)


if __name__ == "__main__":
    main()
