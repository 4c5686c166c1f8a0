"""Python client for posebus backends: subscribe to results, talk to the control socket.

    for message in subscribe("tcp://127.0.0.1:5555", job="abc"):
        ...  # job_start, then frame messages in order, then job_end

    control = Control("tcp://127.0.0.1:5556")
    job = control.submit("clip.mp4")

Across machines, with CURVE (see docs/security.md)::

    curve = Curve(keys_dir(), "backend", server_name="server")  # from bus.security
    for message in subscribe("tcp://gpu-box:5555", security=curve):
        ...
"""
from __future__ import annotations

from typing import Iterator

import zmq

from bus import codec, messages, sockets
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
            message = sockets.receive(sock, messages.PUBLIC_TYPES)
            yield message
            if job is not None and message["type"] == "job_end":
                return
    finally:
        sock.close(linger=0)


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

    def status(self, job: str) -> dict:
        return self.request(cmd="status", job=job)

    def list(self) -> dict:
        return self.request(cmd="list")

    def health(self) -> dict:
        return self.request(cmd="health")

    def close(self) -> None:
        self._sock.close(linger=0)
