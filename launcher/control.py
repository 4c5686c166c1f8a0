"""``launch.py serve``: the pipeline kept running, taking jobs on the control socket (REP).

Requests (submit, status, cancel, list, health, the uploads of ``launcher.uploads`` and the result files of
``launcher.results``) are validated by ``bus.messages`` and answered from the pipeline's job records (a queued
job's ``queue_position``: 1 runs next); up to ``--max-jobs`` jobs run at once. A detect worker that
dies costs no job anything; a decode or track stage that dies fails the jobs running, is
restarted, and the queued jobs go on.
"""
from __future__ import annotations

import argparse
import sys
import time

from bus import codec, messages, sockets
from launcher.pipeline import Pipeline
from launcher.results import FetchError, ResultFiles
from launcher.uploads import CHUNK_BYTES, Uploads

# A backend that saw a job's job_end (results socket) may ask for its files before the launcher has the
# job_end too (status link): a request about a running job waits this long for it.
JOB_END_WAIT_S = 0.2


def submit_upload(pipeline: Pipeline, uploads: Uploads, request: dict) -> dict:
    """The complete upload becomes the job's source; it is removed when the job has ended."""
    from video.sources import SourceError, open_source

    problem = pipeline.refusal(request.get("options") or {})  # before the upload is taken: it stays to resend
    if problem:
        return {"ok": False, "error": problem}
    upload = uploads.take(request["upload"])
    try:
        open_source(str(upload.path))
        job = pipeline.submit(str(upload.path), request.get("job"), request.get("options"), f"upload:{upload.name}")
    except (SourceError, ValueError) as exc:
        uploads.remove(upload)
        return {"ok": False, "error": f"upload {upload.id} ({upload.name}): {exc}"}
    uploads.hold(job, upload)
    return {"ok": True, "job": job}


def output_chunk(pipeline: Pipeline, results: ResultFiles, request: dict) -> dict:
    """A chunk of one of a job's result files, once the job has ended."""
    job = request["job"]
    record = pipeline.records.get(job)
    if record is None:
        raise FetchError(f"no job {job}")
    deadline = time.monotonic() + JOB_END_WAIT_S
    while record.state == "running" and time.monotonic() < deadline:  # its job_end may be on its way here
        results.note(pipeline.poll(20))
    if record.state in ("queued", "running"):
        raise FetchError(f"job {job} is {record.state}: its result files can be fetched once it has ended")
    return {"ok": True, **results.chunk(job, request["output"], request.get("index"), request["offset"],
                                        request.get("max_bytes"))}


def handle_request(pipeline: Pipeline, request: dict, uploads: Uploads, results: ResultFiles) -> dict:
    """Answer one control request (already validated); an ``UploadError`` or ``FetchError`` (ValueErrors) is the
    caller's to reply."""
    command = request["cmd"]
    if command == "output_chunk":
        return output_chunk(pipeline, results, request)
    if command == "upload":
        upload = uploads.start(request["name"], request["size"])
        return {"ok": True, "upload": upload.id, "chunk_bytes": CHUNK_BYTES}
    if command == "upload_chunk":
        return {"ok": True, "received": uploads.add(request["upload"], request["offset"], request["data"])}
    if command == "submit_upload":
        return submit_upload(pipeline, uploads, request)
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
        return {"ok": True, **vars(record), **results.listing(record.id)}
    if command == "cancel":
        record = pipeline.records.get(request["job"])
        if record is None or record.state not in ("queued", "running"):
            return {"ok": False, "error": f"no queued or running job {request['job']}"}
        pipeline.cancel(record.id)
        return {"ok": True, "job": record.id}
    if command == "list":
        return {"ok": True, "jobs": [{**vars(r), **results.listing(r.id)} for r in pipeline.records.values()]}
    health = pipeline.health()
    return {"ok": True, "stages": {name: stage["alive"] for name, stage in health.items()}, "processes": health,
            "heartbeat_timeout_s": pipeline.args.heartbeat_timeout, "restarts": pipeline.restarts,
            "detector": pipeline.args.detector, "ready": pipeline.ready(), "detectors": pipeline.readiness()}


def serve(args: argparse.Namespace) -> int:
    pipeline = Pipeline(args)
    uploads = Uploads(pipeline.folder / "uploads", args.max_upload_mb * 2**20)
    results = ResultFiles()
    control = sockets.bind(pipeline.ctx, "control", args.control, security=pipeline.security)
    print(f"posebus: serving; control {args.control}, results {args.results}, metrics {args.metrics}",
          file=sys.stderr)
    try:
        while True:
            results.note(pipeline.poll(0))
            dead = pipeline.supervise()
            if dead:  # fail the jobs in hand, bring the stage back, take the next jobs
                print(f"posebus: error: stage stopped: {', '.join(dead)}; restarting it", file=sys.stderr)
                pipeline.fail_running_jobs(f"stage stopped: {', '.join(dead)}")
                pipeline.restart_dead()
            uploads.tidy({job for job, record in pipeline.records.items() if record.state in ("done", "failed")})
            if not control.poll(100):
                continue
            try:
                request = messages.validate_request(codec.decode(control.recv_multipart(copy=False)))
                results.note(pipeline.poll(0))  # answer with the latest job states
                reply = handle_request(pipeline, request, uploads, results)
            except ValueError as exc:
                reply = {"ok": False, "error": str(exc)}
            control.send_multipart(codec.encode(reply))
    except KeyboardInterrupt:
        return 130
    finally:
        pipeline.stop()
