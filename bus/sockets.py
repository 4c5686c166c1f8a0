"""Every socket of the pipeline: who binds, who connects, and how it is tuned.

::

    launcher --jobs--> decode --frames--> detect ×N
                         |                    |
                         +--events--+    detections
                                    v         v
    backend <--results------------- track --status--> launcher

    link        binds (type)        connects (type)
    jobs        launcher (PUSH)     decode (PULL)
    frames      decode (PUSH)       detect workers (PULL)
    lanes       decode (PULL)       decode's job lanes (PUSH), inproc
    lane_acks   decode (PUSH)       one job's lane (PULL), inproc
    events      track (PULL)        decode (PUSH)
    detections  track (PULL)        detect workers (PUSH)
    acks        track (PUSH)        decode (PULL)
    results     track (XPUB)        backends (SUB)
    status      launcher (PULL)     track (PUSH)
    control     launcher (REP)      backends (REQ)
    history     track (ROUTER)      backends (DEALER)
    stage_metrics launcher (SUB)    every stage (PUB)
    metrics     launcher (XPUB)     monitors (SUB): launch.py status, bus.tap

Metrics flow the other way round from results: each stage connects a PUB to
the launcher's bound SUB, so a stage never blocks on them and stages may come
and go, and the launcher relays them on its ``metrics`` XPUB (launcher.monitor).

The stable end of each link binds: decode binds ``frames`` (workers come and
go), track binds ``detections``, ``events`` and ``results``, the launcher
binds ``jobs``, ``status`` and ``control``. High-water marks are small for
frames (a raw 1080p frame is 6 MB; ZeroMQ's default of 1000 queues 6 GB per
pipe) and generous for small messages.

With ``security`` (a :class:`bus.security.Curve`), tcp links use CURVE: the
binding end is the server, the connecting end the client. ipc and inproc links
never leave the machine and go without it (the launcher's ipc folder is 0700).

A binding end may bind several endpoints: the launcher's decode binds
``frames`` on ipc for its own workers and on tcp for workers on other hosts
(``launch.py --worker-links``), track and the launcher likewise ``detections``
and ``stage_metrics``. The frames link sends heartbeats over tcp: a worker whose
network goes away loses its pipe after three missed ones, so decode stops dealing it
frames (the ones it held are sent again on the track stage's request) rather
than filling that pipe and the kernel's send buffer (megabytes: many JPEG frames)
again with every resend. Not over ipc: the kernel reports a local worker's death
at once, and a worker busy for longer than the heartbeat timeout with its pipe full
(it reads no ping then) would lose its connection, and libzmq 4.3.5 then aborts the
worker (``Assertion failed: _input_stopped``) when it reads on after reconnecting.
Only decode's end pings (its engine never stops reading: a PUSH takes no messages in). A
worker's end never runs a heartbeat timer: its engine stops reading whenever the worker is
busy with its pipe full, and when the peer closes meanwhile libzmq 4.3.5 marks it failed
but keeps it, and the timer's next ping aborts the worker (``Assertion failed: !_io_error``,
stream_engine_base.cpp, out_event; seen at the shutdown of HMR 2.0 runs, whose batches take
seconds, when decode left first). The worker notices a dead link by TCP keepalive instead
(the kernels answer those probes, however busy the worker is).
Over ipc the frames link's kernel buffers are small: a frame in shared memory is a
message of a few hundred bytes, and the system's buffers would hold hundreds of them
queued for a worker, far past the high-water mark, so that the frame decode chooses
to send next (a live job's, a new job's) would wait behind them all.
"""
from __future__ import annotations

import ipaddress
import logging
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import zmq

from bus import codec, messages
from bus.logline import log_line
from bus.schema import SchemaError
from bus.security import Curve

log = logging.getLogger("posebus.bus")


@dataclass(frozen=True)
class Link:
    bind_type: int  # socket type of the binding end
    connect_type: int
    binder: str  # the process that binds
    default: str  # endpoint when a stage runs on its own
    hwm: int
    linger_ms: int
    # The message types (bus.messages) its receiving end takes: ``receive`` refuses the others.
    # Control requests and replay requests are checked as requests (messages.validate_request*).
    carries: tuple[str, ...] = ()
    topic: bool = False  # each message comes after a topic frame (``messages.topic``)
    # Over tcp, the binding end sends ZMTP pings this often and drops a peer silent for HEARTBEAT_MISSES of
    # them; the connecting end sends TCP keepalive probes after as long without traffic (module docstring).
    heartbeat_ms: int = 0
    # Kernel socket buffer (bytes) of its ipc connections (1: the smallest the kernel allows, some 4 kB;
    # 0: the system's). The high-water mark counts only the messages in ZeroMQ's queues: small ones (frames
    # in shared memory) also fill the kernel's buffers, hundreds of them, all ahead of whatever is sent next.
    # Raw 6 MB frames cross ipc as fast either way (1.9 ms against 1.8 ms, measured).
    ipc_buffer: int = 0


HEARTBEAT_MISSES = 3

LINKS: dict[str, Link] = {
    "jobs": Link(zmq.PUSH, zmq.PULL, "launcher", "tcp://127.0.0.1:5560", hwm=100, linger_ms=0,
                 carries=("job", "cancel")),
    "frames": Link(zmq.PUSH, zmq.PULL, "decode", "tcp://127.0.0.1:5557", hwm=2, linger_ms=0, carries=("image",),
                   heartbeat_ms=1000, ipc_buffer=1),
    # Inside decode: each job's lane (a thread) hands the stage's loop its frames, which it deals out on
    # ``frames`` (stages.decode.FairFrames), and its job events, which it sends on ``events`` (a link that
    # outlives the lane: the track stage may not be up yet); the lane takes its job's acks from the loop.
    "lanes": Link(zmq.PULL, zmq.PUSH, "decode", "inproc://lanes", hwm=1000, linger_ms=0,
                  carries=("image", "job_start", "job_end")),
    "lane_acks": Link(zmq.PUSH, zmq.PULL, "decode", "inproc://lane-acks", hwm=1000, linger_ms=0, carries=("ack",)),
    "events": Link(zmq.PULL, zmq.PUSH, "track", "tcp://127.0.0.1:5559", hwm=1000, linger_ms=2000,
                   carries=("job_start", "job_end")),
    "detections": Link(zmq.PULL, zmq.PUSH, "track", "tcp://127.0.0.1:5558", hwm=100, linger_ms=2000,
                       carries=("detections",)),
    # Track tells decode which frames are done and which to send again (at-least-once delivery).
    "acks": Link(zmq.PUSH, zmq.PULL, "track", "tcp://127.0.0.1:5565", hwm=1000, linger_ms=0, carries=("ack",)),
    "results": Link(zmq.XPUB, zmq.SUB, "track", "tcp://127.0.0.1:5555", hwm=10_000, linger_ms=2000,
                    carries=messages.PUBLIC_TYPES, topic=True),
    "status": Link(zmq.PULL, zmq.PUSH, "launcher", "tcp://127.0.0.1:5561", hwm=1000, linger_ms=500,
                   carries=("progress", "job_end")),
    "control": Link(zmq.REP, zmq.REQ, "launcher", "tcp://127.0.0.1:5556", hwm=100, linger_ms=0),
    # A job's logged results from any frame on request: catching up after a late start or a gap.
    "history": Link(zmq.ROUTER, zmq.DEALER, "track", "tcp://127.0.0.1:5562", hwm=2000, linger_ms=0,
                    carries=(*messages.PUBLIC_TYPES, "replay_end"), topic=True),
    "metrics": Link(zmq.XPUB, zmq.SUB, "launcher", "tcp://127.0.0.1:5563", hwm=1000, linger_ms=0,
                    carries=("metrics",), topic=True),
    "stage_metrics": Link(zmq.SUB, zmq.PUB, "launcher", "tcp://127.0.0.1:5564", hwm=1000, linger_ms=0,
                          carries=("metrics",), topic=True),
}
# What ``receive`` raises for a message that is not one: only these count as malformed (dropped with a log line).
MALFORMED = (codec.CodecError, SchemaError)


def is_loopback(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and tcp on a loopback address."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tune(sock: zmq.Socket, link: Link) -> zmq.Socket:
    sock.setsockopt(zmq.SNDHWM, link.hwm)
    sock.setsockopt(zmq.RCVHWM, link.hwm)
    sock.setsockopt(zmq.LINGER, link.linger_ms)
    return sock


def _per_transport(sock: zmq.Socket, link: Link, endpoint: str, binding: bool) -> None:
    """Options for the connections made from now on to or from ``endpoint``: over tcp, ZMTP heartbeats from
    the binding end and TCP keepalive from the connecting end; small kernel buffers over ipc (module docstring)."""
    if link.heartbeat_ms and is_tcp(endpoint) and binding:
        sock.setsockopt(zmq.HEARTBEAT_IVL, link.heartbeat_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_MISSES * link.heartbeat_ms)
    elif link.heartbeat_ms and is_tcp(endpoint):
        interval_s = max(1, round(link.heartbeat_ms / 1000))
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, HEARTBEAT_MISSES * interval_s)
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, interval_s)
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, HEARTBEAT_MISSES)
    if link.ipc_buffer:
        size = link.ipc_buffer if urlsplit(endpoint).scheme == "ipc" else -1
        sock.setsockopt(zmq.SNDBUF, size)
        sock.setsockopt(zmq.RCVBUF, size)


def is_tcp(endpoint: str) -> bool:
    return urlsplit(endpoint).scheme == "tcp"


def bind(ctx: zmq.Context, name: str, endpoint: str | None = None,
         security: Curve | None = None, also: tuple[str, ...] = ()) -> zmq.Socket:
    """Create the binding end of link ``name``, bound to ``endpoint`` and the ``also`` endpoints
    (tcp ones as a CURVE server with ``security``)."""
    link = LINKS[name]
    sock = _tune(ctx.socket(link.bind_type), link)
    if link.bind_type == zmq.XPUB:
        # Pass every subscription up so the publisher can count subscribers. A
        # subscriber more than `hwm` messages behind loses live messages rather
        # than stalling the pipeline for everyone; frame indices show it the gap
        # and the replay link fills it (bus.client.follow does both).
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    if link.bind_type == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # a binding SUB collects everything its publishers send

    def curve(endpoint: str) -> bool:
        return security is not None and is_tcp(endpoint)

    # CURVE and heartbeat options hold for the binds made after they are set: ipc first, then plain tcp.
    for endpoint in sorted([endpoint or link.default, *also], key=lambda e: (is_tcp(e), curve(e))):
        if not is_loopback(endpoint) and not curve(endpoint):
            print(f"posebus: warning: {name} binds {endpoint}, reachable from other machines "
                  "without encryption", file=sys.stderr)
        _per_transport(sock, link, endpoint, binding=True)
        if curve(endpoint) and not sock.curve_server:
            security.as_server(sock)
        sock.bind(endpoint)
    return sock


# A tcp port on loopback that the system picks, free by construction: a one-off run's backend endpoints.
ANY_PORT = "tcp://127.0.0.1:*"


def bound_endpoint(sock: zmq.Socket) -> str:
    """The endpoint ``sock`` last bound, with the port the system picked for a ``*``."""
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


def connect(ctx: zmq.Context, name: str, endpoint: str | None = None,
            topics: tuple[bytes, ...] = (b"",), security: Curve | None = None) -> zmq.Socket:
    """Create and connect the connecting end of link ``name`` (``topics`` for SUB;
    a CURVE client over tcp with ``security``)."""
    link = LINKS[name]
    endpoint = endpoint or link.default
    sock = _tune(ctx.socket(link.connect_type), link)
    if security is not None and is_tcp(endpoint):
        security.as_client(sock)
    _per_transport(sock, link, endpoint, binding=False)
    if link.connect_type == zmq.SUB:
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t)
    sock.connect(endpoint)
    return sock


def send(sock: zmq.Socket, message: dict, flags: int = 0) -> None:
    """Send one message; from a publisher (results, metrics) it is prefixed with its topic."""
    parts = codec.encode(message)
    if sock.type in (zmq.XPUB, zmq.PUB):
        parts = [messages.topic(message), *parts]
    sock.send_multipart(parts, flags=flags, copy=False)


def parse(parts: list, link: str) -> dict:
    """Decode and validate the frames of one message received on ``link``: one of the types it carries
    (raises ``MALFORMED``)."""
    if LINKS[link].topic:
        parts = parts[1:]
    return messages.validate(codec.decode(parts), LINKS[link].carries)


def receive(sock: zmq.Socket, link: str, flags: int = 0) -> dict:
    """Receive, decode and validate one message of ``link`` (raises ``MALFORMED``)."""
    return parse(sock.recv_multipart(flags=flags, copy=False), link)


class Counter:
    """Counts messages dropped as malformed, logging one line for each."""

    def __init__(self, stage: str):
        self.stage = stage
        self.dropped = 0

    def drop(self, error: Exception) -> None:
        self.dropped += 1
        log_line(log, logging.WARNING, "bad_message_dropped", dropped=self.dropped, error=error)
