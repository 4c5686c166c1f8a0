"""Every message on the bus: its fields, their checks, and how to build it.

This module is the message contract; docs/protocol.md describes the same
thing for people and a test keeps the two in step. A message is a map with
``type``, ``schema`` (``SCHEMA``) and ``job``; the rest depends on the type.

Public (published to backends on the results socket): ``job_start``,
``frame``, ``track_event``, ``job_end``. Internal (between posebus processes): ``job``
(launcher → decode), ``image`` (decode → detect), ``detections``
(detect → track), ``ack`` (track → decode), ``progress`` (track → launcher). Monitoring: ``metrics``
(every stage → launcher → the metrics link), which belongs to no job.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from bus.schema import AnyOf, Array, Between, Enum, ListOf, MapOf, Optional, SchemaError, Struct, check
from options import job_spec
from options.groups import DECODE, DETECT, TRACK, TRACKER
from pose.angles import ANGLE_KEYS, joint_angles
from pose.detection import Detection, FrameDetections
from pose.skeleton import CANONICAL_JOINTS

SCHEMA = 1
JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A frame ring's file in /dev/shm (bus.frame_ring): ``posebus-<decode's pid>-<16 hex digits>``, no path.
SHM_NAME = re.compile(r"^posebus-[0-9]{1,10}-[0-9a-f]{16}$")
_MAX_IMAGE_BYTES = 8192 * 8192 * 3
STATES = ("observed", "predicted", "interpolated", "held")

_J = len(CANONICAL_JOINTS)
_KEYPOINTS = Array("<f4", (_J, 3))
_BBOX = Array("<f4", (4,))

# Detector-specific per-person fields, carried through from the detector.
PERSON_EXTRAS = {
    "smpl": Struct({
        "global_orient": Array("<f4", (1, 3, 3)),
        "body_pose": Array("<f4", (23, 3, 3)),
        "betas": Array("<f4", (10,)),
    }),
    "camera": Struct({"translation": Array("<f4", (3,)), "focal_length": float,
                      "principal_point": Array("<f4", (2,))}),
    "vertices": Array("<f4", (6890, 3)),
    "keypoints_3d_native": Array("<f4", (None, 3), max_items=1000),
    "appearance": Array("<f4", (None,), max_items=4096),
}

DETECTION = Struct(
    {"score": float, "bbox": _BBOX, "keypoints_2d": _KEYPOINTS, "keypoints_3d": Optional(_KEYPOINTS)},
    {"extras": Struct({}, PERSON_EXTRAS)},
)

# The observed, unsmoothed values of a person detected in this frame: every value the detector gave.
RAW = Struct({"bbox": _BBOX, "keypoints_2d": _KEYPOINTS, "keypoints_3d": Optional(_KEYPOINTS)},
             {key: spec for key, spec in PERSON_EXTRAS.items() if key != "appearance"})

PERSON = Struct(
    {
        "track_id": int,
        "state": Enum(STATES),
        "confidence": float,
        "frames_since_seen": int,
        "bbox": _BBOX,
        "keypoints_2d": _KEYPOINTS,
        "keypoints_3d": Optional(_KEYPOINTS),
        "joint_angles": Struct({}, {key: Optional(float) for key in ANGLE_KEYS}),
    },
    {**PERSON_EXTRAS, "raw": RAW},
)
TRACK_EVENTS = ("born", "confirmed", "lost", "reidentified", "ended")
_FACES = Array("<i4", (None, 3), max_items=100_000)

_HEADER = {"type": str, "schema": int, "job": str}
# What a job may ask for (the options declared with ``job``); the rest of the pipeline's settings are the launcher's.
JOB_OPTIONS = job_spec(DETECT, DECODE, TRACK, TRACKER)
# Wall-clock seconds (time.time()) at which a frame passed each stage, for latency figures.
_TIMESTAMPS = {"timestamps": MapOf(float, 8)}
_LATENCY_WINDOW = Struct({"p50": Optional(float), "p95": Optional(float), "samples": int})  # ms, over an interval

SPECS: dict[str, Struct] = {
    "job": Struct({**_HEADER, "source": str}, {"options": JOB_OPTIONS, "source_from": str}),
    "cancel": Struct(_HEADER, {"error": str}),
    "job_start": Struct(
        {
            **_HEADER,
            "source": str,
            "fps": float,
            "width": int,
            "height": int,
            "frame_count": Optional(int),
        },
        {
            # The source as the backend gave it, when posebus reads it elsewhere: a Windows path mapped to
            # WSL's (video.sources.local_path), or an upload spooled to a file (launcher.uploads).
            "source_from": str,
            # Present when decode downscaled the frames (video.sources.fit_within): the size
            # the detectors saw. Every pixel value in the results is mapped back to width × height.
            "downscaled": Struct({"width": int, "height": int}),
            "detector": str,
            "joints": MapOf(ListOf(str, 1000)),
            "angles": ListOf(str),
            "intrinsics": Struct({"fx": float, "fy": float, "cx": float, "cy": float}),
            "options": JOB_OPTIONS,
            "mesh_faces": _FACES,
            # A one-off run (launch.py VIDEO without --results/--history): the ports the system picked.
            "endpoints": Struct({"results": str, "history": str}),
        },
    ),
    "image": Struct(
        {**_HEADER, "index": int, "pts_ms": float, "width": int, "height": int},
        {"image": Array("|u1", (None, None, 3), max_items=_MAX_IMAGE_BYTES), "jpeg": bytes,
         # The pixels, (height, width, 3) |u1, are at byte slot × slot_bytes of a frame ring (same host only).
         "shm": Struct({"name": str, "slot": Between(int, 0, 1 << 20),
                        "slot_bytes": Between(int, 1, _MAX_IMAGE_BYTES)}),
         **_TIMESTAMPS},
    ),
    "detections": Struct(
        {**_HEADER, "index": int, "pts_ms": float, "people": ListOf(DETECTION, 1000)},
        {"error": Optional(str), "worker": str, "mesh_faces": _FACES, "focal_length": Between(float, 1e-3, 1e9),
         **_TIMESTAMPS},
    ),
    "frame": Struct(
        {**_HEADER, "index": int, "pts_ms": float, "people": ListOf(PERSON, 1000)},
        {"detection_failed": bool, **_TIMESTAMPS},
    ),
    "track_event": Struct({**_HEADER, "index": int, "event": Enum(TRACK_EVENTS), "track_id": int}),
    # The track stage adds the job's result files: those complete (option name -> absolute path, or the paths of
    # a per-track output) and those that failed (option name -> error); decode's job_end has neither.
    "job_end": Struct({**_HEADER, "frames": int, "status": Enum(("ok", "error"))},
                      {"error": Optional(str), "outputs": MapOf(AnyOf((str, ListOf(str, 10_000))), 64),
                       "output_errors": MapOf(str, 64)}),
    "progress": Struct({**_HEADER, "frames": int, "with_person": int, "detection_failed": int}),
    # Track -> decode: frames below ``upto`` are done; send the ``resend`` ones again.
    "ack": Struct({**_HEADER, "upto": int, "resend": ListOf(int, 10_000)}),
    # Last reply to a replay request: where to ask next, and whether the job has ended.
    "replay_end": Struct({**_HEADER, "next": int, "done": bool}, {"error": Optional(str)}),
    # A stage's periodic snapshot (bus.metrics, docs/metrics.md): counters since it started, rates and
    # latencies over the last `interval` seconds.
    "metrics": Struct({
        "type": str, "schema": int, "stage": str, "worker": str, "host": str, "pid": int, "time": float,
        "interval": float, "messages_in": int, "messages_out": int, "frames": int, "fps": float, "queue": int,
        "drops": int, "retries": int, "errors": int,
        "latency_ms": MapOf(_LATENCY_WINDOW, 8),
        "jobs": MapOf(int, 64),
    }, {"gpu_memory": Optional(int), "skipped": MapOf(int, 32),
        "job_latency_ms": MapOf(MapOf(_LATENCY_WINDOW, 8), 64)}),
}
PUBLIC_TYPES = ("job_start", "frame", "track_event", "job_end")

# Requests on the control socket (REQ/REP): a map with ``cmd``; every reply has
# ``ok`` and, when ``ok`` is false, ``error``.
CONTROL_REQUESTS: dict[str, Struct] = {
    "submit": Struct({"cmd": str, "source": str}, {"job": str, "options": JOB_OPTIONS}),
    "status": Struct({"cmd": str, "job": str}),
    "list": Struct({"cmd": str}),
    "health": Struct({"cmd": str}),
    "cancel": Struct({"cmd": str, "job": str}),
    # A file's bytes over this socket (launcher.uploads): announce it, send its chunks in order, submit it.
    "upload": Struct({"cmd": str, "name": str, "size": Between(int, 1, 2**50)}),
    "upload_chunk": Struct({"cmd": str, "upload": str, "offset": Between(int, 0, 2**50), "data": bytes}),
    "submit_upload": Struct({"cmd": str, "upload": str}, {"job": str, "options": JOB_OPTIONS}),
    # A finished job's result file, in chunks (launcher.results): by the output's name (and a per-track output's
    # index) in the job's job_end, never by path.
    "output_chunk": Struct({"cmd": str, "job": str, "output": str, "offset": Between(int, 0, 2**50)},
                           {"index": Between(int, 0, 10_000), "max_bytes": Between(int, 1, 2**50)}),
}
UPLOAD_ID = re.compile(r"^[0-9a-f]{16}$")
# Requests on the replay socket (DEALER -> ROUTER): a job's messages from frame ``from``.
REPLAY_REQUEST = Struct({"cmd": str, "job": str, "from": int, "count": int})


def validate(message: dict, expected: tuple[str, ...] | None = None) -> dict:
    """Check a decoded message against its type's spec; returns it, or raises SchemaError."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in SPECS:
        raise SchemaError(f"unknown message type {kind!r}")
    if expected is not None and kind not in expected:
        raise SchemaError(f"unexpected message type {kind!r} here (want {', '.join(expected)})")
    if not isinstance(message.get("schema"), int) or message["schema"] != SCHEMA:
        raise SchemaError(f"schema version {message.get('schema')!r} is not {SCHEMA}")
    check(message, SPECS[kind], kind)
    if "job" in SPECS[kind].required and not JOB_ID.match(message["job"]):
        raise SchemaError(f"{kind}.job {message['job']!r} is not a valid job id")
    if kind == "image":
        if sum(payload in message for payload in ("image", "jpeg", "shm")) != 1:
            raise SchemaError("image must carry exactly one of image, jpeg or shm")
        if "shm" in message and not SHM_NAME.match(message["shm"]["name"]):
            raise SchemaError(f"image.shm.name {message['shm']['name']!r} is not a frame ring's name")
    return message


def validate_replay_request(request: dict) -> dict:
    check(request, REPLAY_REQUEST, "replay")
    if request["cmd"] != "replay" or not JOB_ID.match(request["job"]) or request["from"] < 0 or request["count"] < 1:
        raise SchemaError(f"bad replay request {request!r}")
    return request


def replay_end(job: str, next_index: int, done: bool, error: str | None = None) -> dict:
    return {**_header("replay_end", job), "next": next_index, "done": done, "error": error}


def validate_request(request: dict) -> dict:
    """Check a decoded control request; returns it, or raises SchemaError."""
    command = request.get("cmd")
    if not isinstance(command, str) or command not in CONTROL_REQUESTS:
        raise SchemaError(f"unknown command {command!r} (known: {', '.join(CONTROL_REQUESTS)})")
    check(request, CONTROL_REQUESTS[command], command)
    if "job" in request and not JOB_ID.match(request["job"]):
        raise SchemaError(f"{command}.job {request['job']!r} is not a valid job id")
    if "upload" in request and not UPLOAD_ID.match(request["upload"]):
        raise SchemaError(f"{command}.upload {request['upload']!r} is not an upload id")
    return request


def topic(message: dict) -> bytes:
    """Results-socket topic ``<job>/<type>``: one subscription to ``<job>/`` follows exactly one job
    (job ids contain no ``/``), so ``--wait-subscribers`` counts one per subscriber.
    Metrics go out as ``metrics/<stage>/<worker>``."""
    if message["type"] == "metrics":
        return f"metrics/{message['stage']}/{message['worker']}".encode()
    return f"{message['job']}/{message['type']}".encode()


def _header(kind: str, job: str) -> dict:
    return {"type": kind, "schema": SCHEMA, "job": job}


# --- builders ---------------------------------------------------------------

def cancel(job: str, error: str = "cancelled") -> dict:
    return {**_header("cancel", job), "error": error}


def job_request(job: str, source: str, options: dict | None = None, source_from: str | None = None) -> dict:
    return {**_header("job", job), "source": source, "options": options or {},
            **({"source_from": source_from} if source_from else {})}


def job_start(job: str, source: str, fps: float, width: int, height: int, frame_count: int | None,
              **extra: Any) -> dict:
    return {**_header("job_start", job), "source": source, "fps": float(fps), "width": int(width),
            "height": int(height), "frame_count": frame_count, **extra}


def job_end(job: str, frames: int, error: str | None = None) -> dict:
    return {**_header("job_end", job), "frames": frames, "status": "error" if error else "ok", "error": error}


def image(job: str, index: int, pts_ms: float, pixels: np.ndarray | None = None,
          jpeg: bytes | None = None, width: int = 0, height: int = 0, shm: dict | None = None) -> dict:
    """The frame as ``pixels``, or its ``jpeg`` or ``shm`` reference (bus.frame_ring) with its size."""
    message = {**_header("image", job), "index": index, "pts_ms": float(pts_ms)}
    if pixels is not None:
        height, width = pixels.shape[:2]
        message["image"] = pixels
    elif jpeg is not None:
        message["jpeg"] = jpeg
    else:
        message["shm"] = shm
    return {**message, "width": int(width), "height": int(height)}


def detections(job: str, index: int, pts_ms: float, people: list[Detection],
               error: str | None = None, worker: str = "") -> dict:
    return {**_header("detections", job), "index": index, "pts_ms": float(pts_ms),
            "people": [detection_to_wire(p) for p in people], "error": error, "worker": worker}


def ack(job: str, upto: int, resend: list[int]) -> dict:
    return {**_header("ack", job), "upto": int(upto), "resend": [int(i) for i in resend]}


def progress(job: str, frames: int, with_person: int, detection_failed: int) -> dict:
    return {**_header("progress", job), "frames": frames, "with_person": with_person,
            "detection_failed": detection_failed}


def metrics(**fields: Any) -> dict:
    return {"type": "metrics", "schema": SCHEMA, **fields}


def frame(job: str, index: int, pts_ms: float, people: list[dict]) -> dict:
    return {**_header("frame", job), "index": index, "pts_ms": float(pts_ms), "people": people}


# --- people -------------------------------------------------------------------

def detection_to_wire(d: Detection) -> dict:
    return {"score": float(d.score), "bbox": d.bbox, "keypoints_2d": d.keypoints_2d,
            "keypoints_3d": d.keypoints_3d, "extras": d.extras}


def detection_from_wire(message: dict) -> Detection:
    return Detection(bbox=message["bbox"], score=message["score"], keypoints_2d=message["keypoints_2d"],
                     keypoints_3d=message["keypoints_3d"], extras=dict(message.get("extras", {})))


def frame_detections(message: dict) -> FrameDetections:
    """A validated ``detections`` message -> the tracker's input."""
    return FrameDetections(index=message["index"], pts_ms=message["pts_ms"],
                           people=[detection_from_wire(p) for p in message["people"]],
                           meta={"timestamps": message.get("timestamps", {}),
                                 "detection_failed": message.get("error") is not None})


def track_event(job: str, index: int, event: str, track_id: int) -> dict:
    return {**_header("track_event", job), "index": int(index), "event": event, "track_id": int(track_id)}


def person(track_id: int, state: str, confidence: float, frames_since_seen: int, d: Detection,
           raw: Detection | None = None) -> dict:
    """One person of a ``frame`` message; joint angles are measured on its 3D keypoints."""
    angles = joint_angles(d.keypoints_3d) if d.keypoints_3d is not None else {k: None for k in ANGLE_KEYS}
    extras = published_extras(d)
    message = {"track_id": int(track_id), "state": state, "confidence": float(confidence),
               "frames_since_seen": int(frames_since_seen), "bbox": _f4(d.bbox), "keypoints_2d": _f4(d.keypoints_2d),
               "keypoints_3d": _f4(d.keypoints_3d), "joint_angles": angles, **extras}
    if raw is not None and raw is not d:
        message["raw"] = {"bbox": _f4(raw.bbox), "keypoints_2d": _f4(raw.keypoints_2d),
                          "keypoints_3d": _f4(raw.keypoints_3d), **published_extras(raw)}
    return message


def published_extras(d: Detection) -> dict:
    """A detection's extras as a frame publishes them: float32, without the tracker's appearance vector."""
    return {key: _f4(value) for key, value in d.extras.items() if key != "appearance"}


def _f4(value):
    """Float arrays (nested in maps too) as float32: filled-in values come out of the tracker's maths as float64."""
    if isinstance(value, dict):
        return {key: _f4(item) for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(np.float32, copy=False)
    return value
