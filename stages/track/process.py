"""Track stage: orders detections, follows people across frames, publishes results.

This module is the process: its flags, the sockets (set up by ``bus.sockets``) and the
poll loop, or ``--replay`` of a recorded job. What happens to each message is in
``stages.track.stage`` (each job's phases, the tracker, the public messages),
``stages.track.delivery`` (acks and resend requests to decode, stalled jobs) and
``stages.track.history`` (replay requests from backends).

    python -m stages.track --results tcp://127.0.0.1:5555 --lookahead 8
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import zmq

import detectors
import options
import outputs
from bus import sockets
from bus.log import read
from options.groups import TRACK, TRACKER
from stages import runtime
from stages.track.history import serve_replay
from stages.track.stage import TrackStage


def replay(stage: TrackStage, folder: Path) -> None:
    """Feed a recorded job through the stage: its job_start, every detection in recorded order, its job_end.

    With ``--wait-subscribers N`` nothing is fed until N subscriptions have come: a
    replay takes a second, so a subscriber that connects as it starts would miss its beginning.
    """
    while not stage.gate_open and not runtime.stop_requested():
        if stage.results.poll(250):
            stage.on_subscription(stage.results.recv())
    events = list(read(folder / "events.log", sockets.LINKS["events"].carries))
    for message in events:
        if message["type"] == "job_start":
            stage.on_job_event(message)
    for message in read(folder / "detections.log", sockets.LINKS["detections"].carries):
        stage.on_detections(message)
        stage.pump()
    for message in events:
        if message["type"] == "job_end":
            stage.on_job_event(message)
    stage.pump()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.track", description=__doc__.split("\n")[0])
    parser.add_argument("--status", metavar="ENDPOINT", help="send progress to the launcher here")
    runtime.add_replay_flag(parser, "track the detections of")
    options.add_flags(parser, "track", TRACK, TRACKER, outputs.table(), detectors.table())
    runtime.add_endpoint_flags(parser, "detections", "events", "results", "history", "acks")
    runtime.add_remote_flag(parser, "detections")
    runtime.add_security_flags(parser)
    runtime.add_metrics_flags(parser)
    runtime.log_level_flag(parser)
    args = parser.parse_args(argv)
    log = runtime.start("track", args.log_level, graceful=True)
    settings = {**TRACK.values(args), **TRACKER.values(args), **outputs.table().values(args),
                **{option.name: getattr(args, option.name) for option in detectors.table().taken_by("track")}}

    ctx = zmq.Context()
    security = runtime.security_from_args(args)
    detections = sockets.bind(ctx, "detections", args.detections, security=security,
                              also=runtime.remote_endpoints(args, "detections"))
    events = sockets.bind(ctx, "events", args.events, security=security)
    results = sockets.bind(ctx, "results", args.results, security=security)
    history = sockets.bind(ctx, "history", args.history, security=security)
    acks = sockets.bind(ctx, "acks", args.acks, security=security)
    status = sockets.connect(ctx, "status", args.status, security=security) if args.status else None
    if sockets.ANY_PORT in (args.results, args.history):  # ports the system picked: say which, here and in job_start
        settings["endpoints"] = {"results": sockets.bound_endpoint(results), "history": sockets.bound_endpoint(history)}
        print(f"posebus: results {settings['endpoints']['results']}, history {settings['endpoints']['history']}",
              file=sys.stderr, flush=True)
    if args.replay:
        stage = TrackStage(results, status, settings, log, clock=None)
        try:
            replay(stage, args.replay)
        finally:
            stage.close()
            ctx.destroy(linger=2000)
        return
    bad = sockets.Counter("track")
    stage = TrackStage(results, status, settings, log, acks=acks,
                       metrics=runtime.start_metrics(ctx, args, "track", bad, security))
    poller = zmq.Poller()
    for sock in (detections, events, results, history):
        poller.register(sock, zmq.POLLIN)
    try:
        while not runtime.stop_requested():
            stage.metrics.queue = sum(stage.reorder.waiting(job) for job in stage.jobs)
            stage.metrics.publish()
            # Wake up at least every 250 ms: metrics, missing frames, stalled jobs.
            ready = dict(poller.poll(min(250, stage.metrics.timeout_ms())))
            stage.request_missing()
            stage.fail_stalled()
            if results in ready:
                stage.on_subscription(results.recv())
            if history in ready:
                serve_replay(history, stage.job_logs)
            for sock, link, handle in ((events, "events", stage.on_job_event),
                                       (detections, "detections", stage.on_detections)):
                if sock in ready:
                    try:
                        message = sockets.receive(sock, link)
                    except sockets.MALFORMED as exc:
                        bad.drop(exc)
                        continue
                    handle(message)
                    stage.metrics.received()
            stage.pump()
    finally:
        stage.close()
        ctx.destroy(linger=2000)

