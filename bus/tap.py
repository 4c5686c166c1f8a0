"""Print a live stream of bus messages, one line each, for debugging a stage.

    python -m bus.tap tcp://127.0.0.1:5555                   # results, as a subscriber
    python -m bus.tap tcp://127.0.0.1:5557 --link frames     # take frames from a decode stage run alone
    python -m bus.tap tcp://127.0.0.1:5558 --link detections # stand in for the track stage
    python -m bus.tap tcp://127.0.0.1:5563 --link metrics    # every stage's metrics, via the launcher

On ``results`` and ``metrics`` the tap is one more subscriber. On the other links it takes the
place of the receiving stage (it consumes what it prints).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import zmq

from bus import metrics, sockets

RECEIVERS = {"results": "connect", "frames": "connect", "detections": "bind", "events": "bind",
             "metrics": "connect"}


def summary(message: dict) -> str:
    """One line describing a message."""
    if message["type"] == "metrics":
        return f"{'metrics':10} {metrics.summary(message)}"
    kind, job = message["type"], message["job"]
    if kind in ("frame", "detections"):
        people = message["people"]
        who = ", ".join(
            f"#{p['track_id']} {p['state']}" if "track_id" in p else f"score {p['score']:.2f}" for p in people)
        extra = f" error={message['error']}" if message.get("error") else ""
        return (f"{kind:10} {job} [{message['index']:5d}] {message['pts_ms']:9.1f} ms  "
                f"{len(people)} people  {who}{extra}")
    if kind == "image":
        size = f"{message['width']}x{message['height']}"
        payload = "jpeg" if "jpeg" in message else f"shm slot {message['shm']['slot']}" if "shm" in message else "raw"
        return f"{kind:10} {job} [{message['index']:5d}] {message['pts_ms']:9.1f} ms  {size} {payload}"
    fields = {k: v for k, v in message.items() if k not in ("type", "job", "schema") and not isinstance(v, np.ndarray)}
    return f"{kind:10} {job} {fields}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bus.tap", description=__doc__.split("\n")[0])
    parser.add_argument("endpoint")
    parser.add_argument("--link", default="results", choices=sorted(RECEIVERS))
    parser.add_argument("--topic", default="", help="topic prefix: JOB/ for one job, JOB/frame for its frames; "
                                                    "metrics/track for the track stage's metrics")
    parser.add_argument("--count", type=int, help="exit after this many messages")
    args = parser.parse_args(argv)

    ctx = zmq.Context()
    if RECEIVERS[args.link] == "bind":
        sock = sockets.bind(ctx, args.link, args.endpoint)
    else:
        sock = sockets.connect(ctx, args.link, args.endpoint, topics=(args.topic.encode(),))
    seen = 0
    try:
        while args.count is None or seen < args.count:
            try:
                line = summary(sockets.receive(sock, args.link))
            except sockets.MALFORMED as exc:
                line = f"bad message: {exc}"
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        ctx.destroy(linger=0)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
