"""Detect stage: one worker process running a detector on the frames it is given.

Run any number of workers; the frames link shares frames among them (PUSH/PULL
fair queueing) and every worker sends its detections to the track stage,
which puts them back in order. A frame whose detection raises is reported
with ``error`` set and no people, so the job goes on. A worker takes the frames
already waiting (up to ``--batch``), of whatever jobs (decode interleaves them), into one
detector call: HMR 2.0 finds their boxes in one call and puts the crops of all of them
through its forwards together, up to ``--crops-per-forward`` a forward.

    python -m stages.detect --detector blazepose
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import zmq

import detectors
import options
from bus import messages, sockets
from bus.frame_ring import BadReference, FrameReader
from bus.log import read, write_all
from bus.logline import log_line
from bus.tap import summary
from detectors.base import FrameImage
from stages import runtime
from tracking.appearance import colour_descriptor


def frame_image(message: dict) -> FrameImage:
    pixels = message.get("image")
    if pixels is None:
        try:
            pixels = cv2.imdecode(np.frombuffer(message["jpeg"], np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:  # an empty buffer
            pixels = None
        if pixels is None:
            raise ValueError(f"frame {message['index']} of job {message['job']}: undecodable JPEG")
    return FrameImage(message["job"], message["index"], message["pts_ms"], pixels)


def receive_image(frames: zmq.Socket, shared: FrameReader) -> dict:
    """One ``image`` message; a frame sent in shared memory comes with its pixels as ``image`` too
    (a read-only view of the slot). Raises ``sockets.MALFORMED`` or BadReference for a malformed message
    or reference."""
    message = sockets.receive(frames, "frames")
    if "shm" in message:
        message["image"] = shared.pixels(message)
    return message


def receive_batch(frames: zmq.Socket, size: int, bad: sockets.Counter, shared: FrameReader,
                  timeout_ms: int | None = None, fill_ms: int = 0) -> list[dict]:
    """Wait up to ``timeout_ms`` (None: for ever) for one frame, then take up to ``size - 1`` more that
    are already waiting or come within ``fill_ms`` of each other (the frames link holds only a few,
    so a slow detector that gains from batching waits a little for the rest); an empty batch when
    none came in time."""
    batch: list[dict] = []
    while len(batch) < size and frames.poll(fill_ms if batch else timeout_ms):
        try:
            batch.append(receive_image(frames, shared))
        except (*sockets.MALFORMED, BadReference) as exc:
            bad.drop(exc)
    return batch


def add_appearance(image: FrameImage, people: list) -> list:
    """Give people the detector left without an appearance vector a colour descriptor, for the tracker."""
    for person in people:
        if "appearance" not in person.extras:
            descriptor = colour_descriptor(image.image, person.bbox)
            if descriptor is not None:
                person.extras["appearance"] = descriptor
    return people


def detect_batch(detector, batch: list[dict], worker: str, log) -> list[dict]:
    """Detections messages for a batch of image messages, one per frame."""
    if not batch:  # the receive timed out: no detector call for nothing
        return []
    images, errors = [], {}
    for message in batch:
        try:
            images.append(frame_image(message))
        except ValueError as exc:
            errors[message["index"]] = str(exc)
    try:
        found = {image.index: add_appearance(image, people) for image, people in zip(images, detector.detect(images))}
    except Exception as exc:  # a detector failure costs this batch, never the worker
        log_line(log, logging.ERROR, "detector_failed", job=batch[0]["job"],
                 frames=",".join(str(m["index"]) for m in batch), error=exc)
        found, errors = {}, {m["index"]: f"detector failed: {exc}" for m in batch}
    replies = []
    for message in batch:
        reply = messages.detections(message["job"], message["index"], message["pts_ms"],
                                    found.get(message["index"], []), errors.get(message["index"]), worker)
        reply["timestamps"] = {**message.get("timestamps", {}), "detected": time.time()}
        faces = getattr(detector, "mesh_faces", None)
        if message["index"] == 0 and faces is not None:  # the track stage puts them in job_start
            reply["mesh_faces"] = faces
        focal = getattr(detector, "image_focal", None)
        if message["index"] == 0 and focal is not None:  # and the focal length in its intrinsics
            reply["focal_length"] = float(focal(message["width"], message["height"]))
        replies.append(reply)
    return replies


def replay(detector, folder: Path, out: Path | None, batch_size: int, log) -> None:
    """Run the detector on a recorded job's frames; write the detections log or print one line each."""
    frames = list(read(folder / "frames.log", sockets.LINKS["frames"].carries))
    replies = [reply for start in range(0, len(frames), batch_size)
               for reply in detect_batch(detector, frames[start:start + batch_size], "replay", log)]
    if out is not None:
        write_all(out, replies)
    else:
        for reply in replies:
            print(summary(reply))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.detect", description=__doc__.split("\n")[0])
    options.add_flags(parser, "detect", detectors.table())
    parser.add_argument("--batch", type=int, default=8, help="most frames per detector call (those already waiting)")
    runtime.add_replay_flag(parser, "detect on the frames of")
    parser.add_argument("--replay-out", type=Path, metavar="LOG", help="with --replay: write the detections log here")
    runtime.add_endpoint_flags(parser, "frames", "detections")
    runtime.add_security_flags(parser)
    runtime.add_metrics_flags(parser)
    runtime.log_level_flag(parser)
    args = parser.parse_args(argv)
    log = runtime.start("detect", args.log_level)

    # Before any socket: the worker's first heartbeat then says its model is loaded (launch.py's health ``ready``).
    detector = detectors.create(args.detector, vars(args))
    if args.replay:
        replay(detector, args.replay, args.replay_out, args.batch, log)
        detector.close()
        return
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ctx = zmq.Context()
    security = runtime.security_from_args(args)
    frames = sockets.connect(ctx, "frames", args.frames, security=security)
    results = sockets.connect(ctx, "detections", args.detections, security=security)
    bad = sockets.Counter("detect")
    metrics = runtime.start_metrics(ctx, args, "detect", bad, security)
    shared = FrameReader()
    log_line(log, logging.INFO, "worker_ready", worker=worker, detector=args.detector)
    try:
        while True:
            batch = receive_batch(frames, args.batch, bad, shared, metrics.timeout_ms(),  # wakes to publish metrics
                                  getattr(detector, "batch_fill_ms", 0))
            if not batch:  # idle: unmap the frame rings of jobs that have ended
                shared.prune()
            metrics.received(len(batch))
            metrics.queue = len(batch)  # more than 1: frames were waiting for this worker
            for reply in detect_batch(detector, batch, worker, log):
                metrics.wait_writable(results)
                sockets.send(results, reply)
                metrics.sent(reply)
            metrics.skipped = dict(getattr(detector, "skipped", {}))
            metrics.publish()
    except KeyboardInterrupt:
        pass
    finally:
        detector.close()
        ctx.destroy(linger=2000)


if __name__ == "__main__":
    runtime.run(main)
