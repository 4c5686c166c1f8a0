"""One end of a CURVE results link, for the network-namespace test (run with ``ip netns exec``).

    python tests/curve_peer.py publish ENDPOINT KEYS SECONDS          serve as "server", send job_end messages
    python tests/curve_peer.py count ENDPOINT KEYS NAME|- SECONDS     subscribe (NAME's keys, or none), print the count
"""
import sys
import time
from pathlib import Path

import zmq

from bus import messages, sockets
from bus.security import Curve, stop_authenticator


def publish(endpoint: str, keys: Path, seconds: float) -> None:
    ctx = zmq.Context()
    pub = sockets.bind(ctx, "results", endpoint, security=Curve(keys, "server"))
    print("bound", flush=True)
    deadline, sent = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        try:
            sockets.send(pub, messages.job_end("netns", sent), zmq.NOBLOCK)
        except zmq.Again:
            pass
        sent += 1
        time.sleep(0.02)
    stop_authenticator(ctx)
    ctx.destroy(linger=0)


def count(endpoint: str, keys: Path, name: str, seconds: float) -> None:
    ctx = zmq.Context()
    security = None if name == "-" else Curve(keys, name, server_name="server")
    sub = sockets.connect(ctx, "results", endpoint, security=security)
    deadline, received = time.monotonic() + seconds, 0
    while (left := deadline - time.monotonic()) > 0:
        if sub.poll(int(left * 1000) + 1):
            sockets.receive(sub, "results")
            received += 1
    print(received, flush=True)
    ctx.destroy(linger=0)


if __name__ == "__main__":
    mode, endpoint, keys, *rest = sys.argv[1:]
    if mode == "publish":
        publish(endpoint, Path(keys), float(rest[0]))
    else:
        count(endpoint, Path(keys), rest[0], float(rest[1]))
