"""Decode stage: turns a job's source into a stream of frames for the detect workers.

For each job it sends ``job_start`` to the track stage (events link), then one
``image`` message per frame to the workers (frames link), then ``job_end``
with the number of frames decoded. A source that cannot be opened or breaks
mid-way ends its job with ``job_end`` status ``error``; the stage carries on.

    python -m stages.decode VIDEO            # one job, then exit
    python -m stages.decode                  # serve jobs from the jobs link
"""
from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

import cv2
import zmq

from bus import codec, messages, sockets
from bus.log import MessageLog
from bus.schema import SchemaError
from stages import runtime
from video.sources import SourceError, open_source


def encode_jpeg(image, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("JPEG encoding failed")
    return data.tobytes()


RECORD_JPEG_QUALITY = 90  # recordings keep frames as JPEG: ~20x smaller than raw pixels


def run_job(request: dict, frames: zmq.Socket, events: zmq.Socket, jpeg_quality: int | None,
            realtime: bool, log, record_dir: Path | None = None) -> None:
    job, options = request["job"], request.get("options", {})
    try:
        source = open_source(request["source"], fps=options.get("fps"))
    except SourceError as exc:
        log.error("job %s: %s", job, exc)
        sockets.send(events, messages.job_end(job, 0, str(exc)))
        return
    info = source.info
    sockets.send(events, messages.job_start(job, info.source, info.fps, info.width, info.height,
                                            info.frame_count, options=options))
    log.info("job %s: %s, %dx%d at %.3f fps", job, info.source, info.width, info.height, info.fps)
    decoded, error, started = 0, None, time.monotonic()
    recording = MessageLog(record_dir / job / "frames.log") if record_dir else None
    try:
        for index, pts_ms, image in source:
            if realtime:  # pace like a live camera
                time.sleep(max(0.0, started + pts_ms / 1000.0 - time.monotonic()))
            message = (messages.image(job, index, pts_ms, jpeg=encode_jpeg(image, jpeg_quality),
                                      width=image.shape[1], height=image.shape[0])
                       if jpeg_quality else messages.image(job, index, pts_ms, image))
            message["timestamps"] = {"decoded": time.time()}
            sockets.send(frames, message)
            if recording:
                recording.write(messages.image(job, index, pts_ms, jpeg=encode_jpeg(image, RECORD_JPEG_QUALITY),
                                               width=image.shape[1], height=image.shape[0]))
            decoded += 1
    except SourceError as exc:
        error = str(exc)
        log.error("job %s: %s", job, exc)
    finally:
        if recording:
            recording.close()
    sockets.send(events, messages.job_end(job, decoded, error))
    log.info("job %s: decoded %d frames", job, decoded)


def refuse(events: zmq.Socket, request: dict, error: SchemaError) -> None:
    """A job request that failed validation still ends its job, when it names one, so nobody waits on it."""
    job = request.get("job")
    if isinstance(job, str) and messages.JOB_ID.match(job):
        sockets.send(events, messages.job_end(job, 0, f"bad job request: {error}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.decode", description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", help="video file, image folder, camera index or stream URL")
    parser.add_argument("--job", help="job id for SOURCE (default: random)")
    parser.add_argument("--fps", type=float, help="frame rate for image folders and streams")
    parser.add_argument("--jpeg", type=int, metavar="QUALITY",
                        help="send JPEG instead of raw pixels (for workers on other hosts)")
    parser.add_argument("--realtime", action="store_true", help="pace frames at the source's frame rate")
    parser.add_argument("--record", type=Path, metavar="DIR", help="save each job's frames to DIR/<job>/frames.log")
    runtime.add_endpoint_flags(parser, "frames", "events", "jobs")
    runtime.add_security_flags(parser)
    runtime.log_level_flag(parser)
    args = parser.parse_args(argv)
    log = runtime.start("decode", args.log_level)

    ctx = zmq.Context()
    security = runtime.security_from_args(args)
    frames = sockets.bind(ctx, "frames", args.frames, security=security)
    events = sockets.connect(ctx, "events", args.events, security=security)
    bad = sockets.Counter("decode")
    try:
        if args.source:
            options = {"fps": args.fps} if args.fps else {}
            request = messages.job_request(args.job or uuid.uuid4().hex[:12], args.source, options)
            run_job(request, frames, events, args.jpeg, args.realtime, log, args.record)
            return
        jobs = sockets.connect(ctx, "jobs", args.jobs, security=security)
        while True:
            try:
                message = codec.decode(jobs.recv_multipart(copy=False))
                request = messages.validate(message, ("job",))
            except codec.CodecError as exc:
                bad.drop(exc)
                continue
            except SchemaError as exc:
                bad.drop(exc)
                refuse(events, message, exc)
                continue
            run_job(request, frames, events, args.jpeg, args.realtime, log, args.record)
    except KeyboardInterrupt:
        pass
    finally:
        ctx.destroy(linger=2000)


if __name__ == "__main__":
    runtime.run(main)
