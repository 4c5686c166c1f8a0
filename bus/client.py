"""Python client for posebus backends: subscribe to results, talk to the control socket.

    for message in subscribe("tcp://127.0.0.1:5555", job="abc"):
        ...  # job_start, then frame messages in order, then job_end

    for message in follow("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5562", job="abc", start=90):
        ...  # the same from frame 90, whenever you join: logged messages first, then live
    files = result_files(message)  # at the job_end: {"app_json": "/abs/abc.json", ...}, complete on disk

    control = Control("tcp://127.0.0.1:5556")
    control.wait_until_ready(timeout_s=300)  # every worker has loaded its model
    job = control.submit("clip.mp4")
    job = control.submit_upload(control.upload(clip_bytes, name="clip.mp4"))  # a clip posebus cannot open
    control.fetch_output(job, "overlay", "overlay.mp4")  # after its job_end: a result file, from another machine

Across machines, with CURVE (see docs/security.md)::

    curve = Curve(keys_dir(), "backend", server_name="server")  # from bus.security
    for message in subscribe("tcp://gpu-box:5555", security=curve):
        ...
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO, Iterator

import zmq

from bus import codec, sockets
from bus.security import Curve


def subscribe(endpoint: str, job: str | None = None, timeout_ms: int | None = None,
              ctx: zmq.Context | None = None, security: Curve | None = None) -> Iterator[dict]:
    """Validated result messages (of one job, if given) until that job's ``job_end``.

    With no job, yields messages of every job forever. Raises TimeoutError when
    nothing arrives for ``timeout_ms``. With ``security``, a tcp endpoint is reached over CURVE.
    """
    ctx = ctx or zmq.Context.instance()
    sock = sockets.connect(ctx, "results", endpoint, topics=(f"{job}/".encode() if job else b"",),
                           security=security)
    try:
        while True:
            if timeout_ms is not None and not sock.poll(timeout_ms):
                raise TimeoutError(f"no message from {endpoint} for {timeout_ms} ms")
            message = sockets.receive(sock, "results")
            yield message
            if job is not None and message["type"] == "job_end":
                return
    finally:
        sock.close(linger=0)


UPLOAD_CHUNK_BYTES = 2**20  # per upload_chunk request: the server takes up to its reply's chunk_bytes
FETCH_CHUNK_BYTES = 2**20  # per output_chunk request (bench.upload): the server sends up to 8 MiB
REPLAY_CHUNK = 500  # frames asked for per replay request
CATCH_UP_WAIT_MS = 100
IDLE_REPLAY_MS = 1000  # a quiet live stream may have lost its last messages: check the log this often


def replay(sock: zmq.Socket, job: str, start: int, count: int = REPLAY_CHUNK) -> tuple[list[dict], dict]:
    """One request on the history link: (messages of ``job`` from frame ``start``, the replay_end)."""
    sock.send_multipart(codec.encode({"cmd": "replay", "job": job, "from": start, "count": count}))
    found = []
    while True:
        message = sockets.receive(sock, "history")
        if message["type"] == "replay_end":
            if message.get("error"):
                raise ValueError(f"replay refused: {message['error']}")
            return found, message
        found.append(message)


class _Sequencer:
    """Passes each message of one job once, frames in index order from ``start``."""

    def __init__(self, start: int):
        self.next_index = start
        self.seen_start = False
        self.seen_track_events: set[tuple] = set()

    def admit(self, message: dict) -> bool:
        kind = message["type"]
        if kind == "job_start":
            fresh, self.seen_start = not self.seen_start, True
            return fresh
        if kind == "frame":
            if message["index"] != self.next_index:
                return False
            self.next_index += 1
            return True
        if kind == "track_event":
            key = (message["index"], message["event"], message["track_id"])
            fresh = key not in self.seen_track_events
            self.seen_track_events.add(key)
            return fresh
        return True  # job_end


def follow(results: str, history: str, job: str, start: int = 0, timeout_ms: int | None = None,
           ctx: zmq.Context | None = None, security: Curve | None = None) -> Iterator[dict]:
    """Every message of ``job`` from frame ``start``, in order, no gaps, no duplicates, until job_end.

    The ZeroMQ guide's Clone pattern: subscribe to the live stream first, then
    catch up from the job's log over the history link, then carry on live;
    whenever the live stream skips a frame (a late start, or falling more than
    the high-water mark behind), the missing frames are fetched from the log.
    """
    ctx = ctx or zmq.Context.instance()
    live = sockets.connect(ctx, "results", results, topics=(f"{job}/".encode(),), security=security)
    log = sockets.connect(ctx, "history", history, security=security)
    sequence = _Sequencer(start)
    need_replay, live_seen, idle_ms = True, False, 0
    try:
        while True:
            if need_replay:
                found, _end = replay(log, job, sequence.next_index)
                for message in found:
                    if sequence.admit(message):
                        yield message
                        if message["type"] == "job_end":
                            return
                need_replay = False
            if live.poll(CATCH_UP_WAIT_MS):
                message = sockets.receive(live, "results")
                live_seen, idle_ms = True, 0
                if message["type"] == "frame" and (message["index"] > sequence.next_index or not sequence.seen_start):
                    need_replay = True  # a gap: the log has what the live stream lost
                elif sequence.admit(message):
                    yield message
                    if message["type"] == "job_end":
                        return
                continue
            idle_ms += CATCH_UP_WAIT_MS
            if timeout_ms is not None and idle_ms >= timeout_ms:
                raise TimeoutError(f"job {job}: nothing new for {timeout_ms} ms")
            # Until the subscription is surely active, or when the stream has gone quiet, ask the log.
            need_replay = not live_seen or idle_ms % IDLE_REPLAY_MS == 0
    finally:
        live.close(linger=0)
        log.close(linger=0)


class OutputError(RuntimeError):
    """Result files of a job failed; ``outputs``: those complete, ``errors``: {output: why} of the others."""

    def __init__(self, job: str, outputs: dict, errors: dict):
        super().__init__(f"job {job}: " + "; ".join(f"{name}: {error}" for name, error in errors.items()))
        self.outputs, self.errors = outputs, errors


def result_files(end: dict) -> dict:
    """The result files a ``job_end`` lists, each complete on disk when it was published: {output (the option's
    name: ``app_json``, ``overlay``, ``phalp_pkl``, ``report``, ``out``, ...): absolute path, or the list of
    paths of a per-track output (``gltf``, ``bvh``)}. Raises ``OutputError`` if any asked-for file failed."""
    outputs, errors = end.get("outputs", {}), end.get("output_errors", {})
    if errors:
        raise OutputError(end["job"], outputs, errors)
    return outputs


class Control:
    """Requests to a ``launch.py serve`` control socket."""

    def __init__(self, endpoint: str, timeout_ms: int = 10_000, ctx: zmq.Context | None = None,
                 security: Curve | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.security = security
        self._sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = sockets.connect(self.ctx, "control", self.endpoint, security=self.security)
        sock.setsockopt(zmq.RCVTIMEO, self.timeout_ms)
        return sock

    def request(self, **request) -> dict:
        self._sock.send_multipart(codec.encode(request))
        try:
            return codec.decode(self._sock.recv_multipart())
        except zmq.Again:
            self._sock.close(linger=0)  # a REQ socket without its reply is stuck: start afresh
            self._sock = self._connect()
            raise TimeoutError(f"no reply from {self.endpoint} within {self.timeout_ms} ms") from None

    def submit(self, source: str, job: str | None = None, **options) -> str:
        reply = self.request(cmd="submit", source=source, options=options, **({"job": job} if job else {}))
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["job"]

    def upload(self, data: bytes | str | Path, name: str | None = None, chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> str:
        """Send a file's bytes (``data``, or the file at a path) in chunks; returns the upload id for
        ``submit_upload``. Raises RuntimeError when the server refuses it (too large, a chunk refused)."""
        if isinstance(data, (str, Path)):
            name = name or Path(data).name
            data = Path(data).read_bytes()
        view = memoryview(data)
        reply = self.request(cmd="upload", name=name or "upload", size=len(view))
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        upload, step = reply["upload"], min(chunk_bytes, reply["chunk_bytes"])
        for offset in range(0, len(view), step):
            chunk = bytes(view[offset:offset + step])
            sent = self.request(cmd="upload_chunk", upload=upload, offset=offset, data=chunk)
            if not sent["ok"]:
                raise RuntimeError(sent["error"])
        return upload

    def submit_upload(self, upload: str, job: str | None = None, **options) -> str:
        """Submit a complete upload as a job's source (removed on the server when the job has ended); the job id."""
        reply = self.request(cmd="submit_upload", upload=upload, options=options, **({"job": job} if job else {}))
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["job"]

    def output_chunks(self, job: str, output: str, index: int | None = None,
                      chunk_bytes: int = FETCH_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes of a finished job's result file, in order, chunk by chunk: ``output`` is the option's name
        as the job's job_end lists it (``app_json``, ``overlay``, ``out``, ...), ``index`` one file of a
        per-track output (``gltf``, ``bvh``). Raises RuntimeError when the server refuses (no such job or
        output, the job has not ended, the file changed since)."""
        offset, size = 0, None
        while True:
            reply = self.request(cmd="output_chunk", job=job, output=output, offset=offset, max_bytes=chunk_bytes,
                                 **({} if index is None else {"index": index}))
            if not reply["ok"]:
                raise RuntimeError(reply["error"])
            if size not in (None, reply["size"]):
                raise RuntimeError(f"job {job}'s {output} file changed size while it was fetched")
            size = reply["size"]
            offset += len(reply["data"])
            yield reply["data"]
            if reply["done"]:
                return
            if not reply["data"]:
                raise RuntimeError(f"job {job}'s {output} file: no bytes at offset {offset} of {size}")

    def fetch_output(self, job: str, output: str, destination: str | Path | BinaryIO, index: int | None = None,
                     chunk_bytes: int = FETCH_CHUNK_BYTES) -> int:
        """Copy a finished job's result file (``output_chunks``) to ``destination``: a path, which appears only
        once complete (written beside under a temporary name, then renamed), or a binary file object.
        Returns the bytes copied."""
        if not isinstance(destination, (str, Path)):
            return sum(destination.write(chunk) for chunk in self.output_chunks(job, output, index, chunk_bytes))
        from outputs.atomic import replacing

        with replacing(destination) as temporary, temporary.open("wb") as file:
            return self.fetch_output(job, output, file, index, chunk_bytes)

    def output_bytes(self, job: str, output: str, index: int | None = None) -> bytes:
        """A finished job's result file (``output_chunks``), whole, in memory."""
        return b"".join(self.output_chunks(job, output, index))

    def status(self, job: str) -> dict:
        return self.request(cmd="status", job=job)

    def cancel(self, job: str) -> dict:
        return self.request(cmd="cancel", job=job)

    def list(self) -> dict:
        return self.request(cmd="list")

    def health(self) -> dict:
        return self.request(cmd="health")

    def wait_until_ready(self, timeout_s: float = 300.0, poll_s: float = 0.25) -> dict:
        """Wait until ``health`` says ``ready`` (every worker has loaded its model); returns that health
        reply. Raises TimeoutError after ``timeout_s``, saying which detectors were still loading."""
        deadline = time.monotonic() + timeout_s
        while True:
            health = self.health()
            if health.get("ready"):
                return health
            if time.monotonic() >= deadline:
                loading = ", ".join(f"{kind} {n['ready']} of {n['workers']} workers"
                                    for kind, n in health.get("detectors", {}).items())
                raise TimeoutError(f"{self.endpoint} not ready within {timeout_s:g} s ({loading or 'no health'})")
            time.sleep(poll_s)

    def close(self) -> None:
        self._sock.close(linger=0)
