"""``launch.py serve``: the pipeline kept running, taking jobs on the control socket (REP).

Requests (submit, status, cancel, list, health) are validated by ``bus.messages`` and
answered from the pipeline's job records (a queued job's ``queue_position``: 1 runs next);
up to ``--max-jobs`` jobs run at once. A detect worker that dies costs no job anything; a
decode or track stage that dies fails the jobs running, is restarted, and the queued jobs go on.
"""
from __future__ import annotations

import argparse
import sys

from bus import codec, messages, sockets
from launcher.pipeline import Pipeline


def handle_request(pipeline: Pipeline, request: dict) -> dict:
    """Answer one control request (already validated)."""
    command = request["cmd"]
    if command == "submit":
        from video.sources import SourceError, is_live, open_source

        source = request["source"]
        if not is_live(source):  # opening a stream or camera would block the socket
            try:
                open_source(source)
            except SourceError as exc:
                return {"ok": False, "error": str(exc)}
        return {"ok": True, "job": pipeline.submit(request["source"], request.get("job"), request.get("options"))}
    if command == "status":
        record = pipeline.records.get(request["job"])
        if record is None:
            return {"ok": False, "error": f"no job {request['job']}"}
        return {"ok": True, **vars(record)}
    if command == "cancel":
        record = pipeline.records.get(request["job"])
        if record is None or record.state not in ("queued", "running"):
            return {"ok": False, "error": f"no queued or running job {request['job']}"}
        pipeline.cancel(record.id)
        return {"ok": True, "job": record.id}
    if command == "list":
        return {"ok": True, "jobs": [vars(r) for r in pipeline.records.values()]}
    health = pipeline.health()
    return {"ok": True, "stages": {name: stage["alive"] for name, stage in health.items()}, "processes": health,
            "heartbeat_timeout_s": pipeline.args.heartbeat_timeout, "restarts": pipeline.restarts,
            "detector": pipeline.args.detector}


def serve(args: argparse.Namespace) -> int:
    pipeline = Pipeline(args)
    control = sockets.bind(pipeline.ctx, "control", args.control, security=pipeline.security)
    print(f"posebus: serving; control {args.control}, results {args.results}, metrics {args.metrics}",
          file=sys.stderr)
    try:
        while True:
            pipeline.poll(0)
            dead = pipeline.supervise()
            if dead:  # fail the jobs in hand, bring the stage back, take the next jobs
                print(f"posebus: error: stage stopped: {', '.join(dead)}; restarting it", file=sys.stderr)
                pipeline.fail_running_jobs(f"stage stopped: {', '.join(dead)}")
                pipeline.restart_dead()
            if not control.poll(100):
                continue
            try:
                request = messages.validate_request(codec.decode(control.recv_multipart(copy=False)))
                pipeline.poll(0)  # answer with the latest job states
                reply = handle_request(pipeline, request)
            except ValueError as exc:
                reply = {"ok": False, "error": str(exc)}
            control.send_multipart(codec.encode(reply))
    except KeyboardInterrupt:
        return 130
    finally:
        pipeline.stop()
