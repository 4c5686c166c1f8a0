"""Cost of moving one 1920×1088 frame across one hop: ``python -m bench.transport``.

Bus: ``messages.image`` through the posebus codec on the project's ``frames``
link (``sockets.bind``/``connect``: PUSH/PULL, HWM 2) to a second process,
which decodes it into an ndarray (``stages.detect.receive_image`` and
``frame_image``: a zero-copy view for raw frames and frames in shared memory,
``cv2.imdecode`` for JPEG) and acknowledges it. Shared memory (``--shm``, the
launcher's default with every worker on this host) counts the sender's copy of
the frame into its ring slot; a slot is reused once its frame is acknowledged.
"Streamed" keeps the link full (how decode feeds the workers); "one in flight"
waits for each acknowledgement, like a synchronous HTTP client.

HTTP (the old service's way): the client encodes JPEG, base64, JSON and POSTs
to a threaded Flask server (``app.run(threaded=True)``, another process),
which parses the JSON, decodes base64 and ``cv2.imdecode``s; one request in
flight over a keep-alive connection (``http.client``: lighter than the old
service's ``requests``, so the ratio is if anything understated).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import zmq

from bench.timing import VIDEO, cpu_seconds, free_port, interleaved, median, publish, spread, table
from bus import codec, sockets
from bus.frame_ring import FrameReader, FrameRing
from stages.decode import encode_jpeg, image_message as decode_image_message
from stages.detect import frame_image, receive_image

JPEG_QUALITY = 95  # the old service's JPEG quality
RING_SLOTS = 32  # launch.MAX_IN_FLIGHT: decode's ring holds that many frames
FRAME_INDEX = 90
SERVER_START_TIMEOUT_S = 30.0
SPAWN = multiprocessing.get_context("spawn")


def video_frame(video: Path = VIDEO, index: int = FRAME_INDEX) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot read frame {index} of {video}")
    return image


def image_message(image: np.ndarray, index: int, jpeg_quality: int | None, ring: FrameRing | None = None) -> dict:
    return decode_image_message("bench", index, index * 1000 / 30, image, jpeg_quality, ring)


# --- the bus hop ------------------------------------------------------------------------

def bus_receiver(frames_endpoint: str, acks_endpoint: str) -> None:
    """Receiving process: decode each frame into an ndarray, acknowledge it with its height."""
    ctx = zmq.Context()
    frames = sockets.connect(ctx, "frames", frames_endpoint)
    acks = ctx.socket(zmq.PUSH)
    acks.connect(acks_endpoint)
    shared = FrameReader()
    while True:
        pixels = frame_image(receive_image(frames, shared)).image
        acks.send(b"%d" % pixels.shape[0])


class BusHop:
    def __init__(self, ctx: zmq.Context, frames_endpoint: str, acks_endpoint: str):
        self.frames = sockets.bind(ctx, "frames", frames_endpoint)
        self.acks = ctx.socket(zmq.PULL)
        self.acks.bind(acks_endpoint)
        self.process = SPAWN.Process(target=bus_receiver, args=(frames_endpoint, acks_endpoint), daemon=True)
        self.process.start()

    def send(self, image: np.ndarray, count: int, jpeg_quality: int | None, one_in_flight: bool,
             ring: FrameRing | None = None) -> float:
        """Seconds to deliver ``count`` frames (and have them acknowledged), in ``ring``'s slots if given."""
        height = b"%d" % image.shape[0]
        unacked: deque[dict] = deque()  # the receiver acknowledges in order

        def acknowledged() -> None:
            assert self.acks.recv() == height
            message = unacked.popleft()
            if "shm" in message:
                ring.release(message["shm"]["slot"])

        start = time.perf_counter()
        for index in range(count):
            if ring is not None and not ring.free:  # every slot holds a frame still on its way
                acknowledged()
            unacked.append(image_message(image, index, jpeg_quality, ring))
            sockets.send(self.frames, unacked[-1])
            if one_in_flight:
                acknowledged()
        while unacked:
            acknowledged()
        return time.perf_counter() - start

    def close(self) -> None:
        self.process.terminate()
        self.process.join()


# --- the old service's HTTP hop ------------------------------------------------------------

def http_server(port: int) -> None:
    """Serving process: the old service's frame endpoint (base64 JPEG in JSON)."""
    import logging

    from flask import Flask, jsonify, request

    os.dup2(2, 1)  # Flask's banner must not land in the bench's markdown on stdout
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = Flask("bench-http")

    @app.post("/frame")
    def frame():
        jpeg = base64.b64decode(request.get_json()["image"])
        pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        return jsonify(height=pixels.shape[0])

    app.run(host="127.0.0.1", port=port, threaded=True)


def http_body(image: np.ndarray, index: int) -> str:
    return json.dumps({"frame": index, "image": base64.b64encode(encode_jpeg(image, JPEG_QUALITY)).decode()})


class HttpHop:
    def __init__(self):
        port = free_port()
        self.process = SPAWN.Process(target=http_server, args=(port,), daemon=True)
        self.process.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or not self.process.is_alive():
                    raise RuntimeError("the Flask server did not start")
                time.sleep(0.05)
        self.connection = http.client.HTTPConnection("127.0.0.1", port)

    def send(self, image: np.ndarray, count: int) -> float:
        start = time.perf_counter()
        for index in range(count):
            self.connection.request("POST", "/frame", http_body(image, index), {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["height"] == image.shape[0]
        return time.perf_counter() - start

    def close(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.join()


# --- the bench ------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    wire_bytes: int  # per frame, as sent
    send: Callable[[int], float]  # frames -> seconds
    receiver_pid: int

    def trial(self, frames: int) -> tuple[float, float]:
        """Wall and CPU seconds (both processes) per frame for ``frames`` frames."""
        pids = (os.getpid(), self.receiver_pid)
        cpu_before = cpu_seconds(*pids)
        wall = self.send(frames)
        return wall / frames, (cpu_seconds(*pids) - cpu_before) / frames


HTTP = "HTTP POST, base64 JPEG in JSON, Flask (old service)"
BUS_IPC = "bus, raw, ipc"
BUS_SHM = "bus, shared memory (`--shm`), ipc"


def variants(stack: ExitStack, image: np.ndarray) -> list[Variant]:
    ctx = zmq.Context()
    stack.callback(ctx.destroy, linger=0)
    folder = tempfile.mkdtemp(prefix="posebus-bench-")
    stack.callback(shutil.rmtree, folder, ignore_errors=True)

    def bus_hop(name: str, frames_endpoint: str) -> BusHop:
        hop = BusHop(ctx, frames_endpoint, f"ipc://{folder}/acks-{name}")
        stack.callback(hop.close)
        return hop

    ipc, tcp = bus_hop("ipc", f"ipc://{folder}/frames"), bus_hop("tcp", f"tcp://127.0.0.1:{free_port()}")
    http = HttpHop()
    stack.callback(http.close)
    ring = FrameRing(RING_SLOTS, image.nbytes)
    stack.callback(ring.close)

    def bus_bytes(jpeg_quality: int | None) -> int:
        return sum(len(memoryview(part)) for part in codec.encode(image_message(image, 0, jpeg_quality)))

    def shm_bytes() -> int:
        message = image_message(image, 0, None, ring)
        ring.release(message["shm"]["slot"])
        return sum(len(memoryview(part)) for part in codec.encode(message))

    raw, jpeg, shm = bus_bytes(None), bus_bytes(JPEG_QUALITY), shm_bytes()
    return [
        Variant(BUS_SHM, shm, lambda n: ipc.send(image, n, None, one_in_flight=False, ring=ring), ipc.process.pid),
        Variant(f"{BUS_SHM}, one in flight", shm,
                lambda n: ipc.send(image, n, None, one_in_flight=True, ring=ring), ipc.process.pid),
        Variant(BUS_IPC, raw, lambda n: ipc.send(image, n, None, one_in_flight=False), ipc.process.pid),
        Variant("bus, raw, tcp", raw, lambda n: tcp.send(image, n, None, one_in_flight=False), tcp.process.pid),
        Variant("bus, raw, ipc, one in flight", raw, lambda n: ipc.send(image, n, None, one_in_flight=True),
                ipc.process.pid),
        Variant(f"bus, JPEG q{JPEG_QUALITY} (`--jpeg`), tcp", jpeg,
                lambda n: tcp.send(image, n, JPEG_QUALITY, one_in_flight=False), tcp.process.pid),
        Variant(HTTP, len(http_body(image, 0)), lambda n: http.send(image, n), http.process.pid),
    ]


Trials = dict[str, list[tuple[float, float]]]  # variant -> per round (wall, CPU) seconds per frame


def measure(rounds: int, frames: int, image: np.ndarray,
            max_wait_s: float | None = 10.0) -> tuple[list[Variant], Trials, str]:
    """Every variant's ``rounds`` interleaved trials of ``frames`` frames each, and a note on quiet."""
    with ExitStack() as stack:
        hops = variants(stack, image)
        for hop in hops:  # warm-up: connections, first allocations
            hop.send(min(frames, 5))
        trials, quiet = interleaved({hop.name: lambda hop=hop: hop.trial(frames) for hop in hops}, rounds,
                                     max_wait_s)
    return hops, trials, quiet


def report(hops: list[Variant], trials: Trials, quiet: str, rounds: int, frames: int) -> str:
    def ms(name: str, column: int) -> list[float]:
        return [1000 * trial[column] for trial in trials[name]]

    def http_over(name: str, column: int) -> str:
        this = median(ms(name, column))  # CPU ticks are 10 ms: a short trial may read 0
        return f"{median(ms(HTTP, column)) / this:.1f}×" if this else "–"

    rows = []
    for hop in hops:
        wall, cpu = ms(hop.name, 0), ms(hop.name, 1)
        rows.append([hop.name, f"{hop.wire_bytes:,}", spread(wall, "{:.2f}"),
                     spread([1000 / m for m in wall], "{:.0f}"), http_over(hop.name, 0), spread(cpu, "{:.2f}"),
                     http_over(hop.name, 1)])
    return "\n\n".join([
        "## Transport: one 1920×1088 frame across one hop",
        f"A real frame (#{FRAME_INDEX} of {VIDEO.name}), two processes on this machine; "
        f"{rounds} interleaved rounds × {frames} frames per variant, median (min–max) over rounds. "
        "Bus: posebus codec over the `frames` link (PUSH/PULL, HWM 2), decoded into an ndarray by the receiver; "
        f"shared memory: the sender copies each frame into a slot of a {RING_SLOTS}-slot ring in /dev/shm and "
        "sends its reference, the receiver views the slot in place (bytes/frame: the message only). "
        "HTTP: includes the client's JPEG + base64 + JSON encoding and the server's base64 + `cv2.imdecode`. "
        "JPEG variants include encoding on the sender and `cv2.imdecode` on the receiver. " + quiet,
        table(["variant", "bytes/frame", "ms/frame", "frames/s", "HTTP ÷ this", "CPU ms/frame", "HTTP ÷ this (CPU)"],
              rows),
        f"The bus hop as the launcher runs it with its workers on one host (shared memory) is "
        f"**{http_over(BUS_SHM, 0)}** cheaper than the old HTTP path in wall time and **{http_over(BUS_SHM, 1)}** "
        f"in CPU time (target ≥ 10×); raw pixels over ipc (workers on other hosts use tcp) are "
        f"{http_over(BUS_IPC, 0)} and {http_over(BUS_IPC, 1)}. CPU is user + system time of both processes "
        "(all threads, 10 ms ticks) during the trial; it is less sensitive to other tenants than wall time.",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=60, help="frames per variant per round")
    args = parser.parse_args()
    hops, trials, quiet = measure(args.rounds, args.frames, video_frame())
    publish("transport", report(hops, trials, quiet, args.rounds, args.frames))


if __name__ == "__main__":
    main()
