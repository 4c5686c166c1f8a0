"""Malformed messages into a running pipeline's sockets; then a real job must come out as a clean run's.

``launch.py serve`` receives on: control (REP, tcp), events and detections
(track's PULLs, ipc), results (track's XPUB: subscription frames), status (the
launcher's PULL, ipc), jobs (decode's PULL) and frames (detect's PULLs). The
test connects to each bound socket. ``jobs`` and ``frames`` are connected
ends (the launcher and decode bind them), so decode is fuzzed on its own, with
the test binding its links; detect's frames PULL is not fuzzed (it needs a
second binder on decode's ipc endpoint). ``status`` is fuzzed by its own test.

Every fuzz message is one that the receiving stage must reject (checked with
the codec and validators before sending), plus valid-looking messages that
name jobs that do not exist. The tests at the bottom pin the bugs this fuzzing
found (all fixed).
"""
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bench.spooled import Spooled
from bus import codec, messages, sockets
from bus.client import Control
from bus.schema import SchemaError

from conftest import ROOT, VIDEO, Collector, free_port, launch, run_job, serving
from fuzzing import VALID, VALID_REQUESTS

PER_SOCKET = 10_000
FOLDER_FRAMES = 30
TIMEOUT_MS = 20_000
BUG_TIMEOUT_MS = 5000  # how long a test waits for what a crashed stage would never send


# --- malformed messages -----------------------------------------------------------

def random_value(rng: random.Random, depth: int = 0):
    choices = [None, rng.random() < 0.5, rng.randint(-2**63, 2**64 - 1), rng.random() * 1e6, "x" * rng.randint(0, 9),
               rng.randbytes(rng.randint(0, 9)), np.zeros(rng.randint(0, 4), np.float32)]
    if depth < 2:
        choices += [[random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
                    {rng.choice(["type", "job", "index", "people", "x"]): random_value(rng, depth + 1)}]
    return rng.choice(choices)


def huge_array_payload(rng: random.Random) -> bytes:
    """A message whose array header declares far more data than it carries."""
    shape = rng.choice([[2**31, 2**31, 3], [2**32, 2**32], [8192, 8192, 3], [2**62], [10**9, 33, 3]])
    header = msgpack.packb([rng.choice(["|u1", "<f4"]), shape, rng.choice([b"", b"\x00" * 16, 0, 5])])
    return msgpack.packb({**rng.choice(VALID), "image": msgpack.ExtType(codec.EXT_NDARRAY, header)},
                         default=lambda a: msgpack.ExtType(codec.EXT_NDARRAY, msgpack.packb(
                             [a.dtype.str, list(a.shape), a.tobytes()])))


def mangled(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        if at < len(data):
            data[at] ^= rng.randint(1, 255)
    return bytes(data)


def candidate(rng: random.Random, valid: list[dict]) -> list[bytes]:
    """One message, perhaps malformed: random bytes, cut or mangled encodings, wrong types, huge shapes."""
    parts = [bytes(p) for p in codec.encode(rng.choice(valid))]
    kind = rng.randrange(7)
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 3))]
    if kind == 1:
        return [parts[0][:rng.randrange(len(parts[0]))], *parts[1:]]
    if kind == 2:
        return [mangled(rng, parts[0]), *parts[1:]]
    if kind == 3:
        return [msgpack.packb(random_value(rng), default=lambda a: a.tolist())]
    if kind == 4:  # a valid message with one field of the wrong type
        message = dict(rng.choice(valid))
        message[rng.choice(sorted(message))] = random_value(rng)
        return codec.encode(message)
    if kind == 5:
        return [huge_array_payload(rng)]
    return parts[:1] if len(parts) > 1 else [*parts, rng.randbytes(8)]  # a part missing or one too many


def rejected(parts: list[bytes], validate) -> bool:
    """True if the receiving stage rejects ``parts`` by the contract."""
    try:
        message = codec.decode(parts)
    except codec.CodecError:
        return True
    try:
        validate(message)
    except (codec.CodecError, SchemaError):
        return True
    return False


def malformed(seed: int, valid: list[dict], validate, count: int = PER_SOCKET) -> list[list[bytes]]:
    rng, found = random.Random(seed), []
    while len(found) < count:
        parts = [bytes(p) for p in candidate(rng, valid)]
        if rejected(parts, validate):
            found.append(parts)
    return found


def expecting(*kinds: str):
    return lambda message: messages.validate(message, kinds)


def ghost_job_ends(count: int) -> list[list[bytes]]:
    """job_end of 0 frames for jobs nobody started: track publishes it and forgets the job."""
    return [codec.encode(messages.job_end(f"ghost-{i}", 0)) for i in range(count)]


# --- pipeline helpers ---------------------------------------------------------------

@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    capture = cv2.VideoCapture(str(VIDEO))
    for i in range(FOLDER_FRAMES):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), capture.read()[1])
    return folder


def comparable(message: dict) -> dict:
    """A result message without what differs between runs (timestamps, job id)."""
    return {k: v for k, v in message.items() if k not in ("timestamps", "job")}


def assert_same_results(got: list[dict], want: list[dict]) -> None:
    assert [m["type"] for m in got] == [m["type"] for m in want]
    for a, b in zip(got, want):
        a, b = comparable(a), comparable(b)
        assert a.keys() == b.keys()
        if a["type"] == "frame":
            assert a["index"] == b["index"] and a["pts_ms"] == b["pts_ms"]
            np.testing.assert_equal(a["people"], b["people"])
        else:
            np.testing.assert_equal(a, b)


def push_all(ctx: zmq.Context, endpoint: str, payloads: list[list[bytes]]) -> None:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    sock.connect(endpoint)
    for parts in payloads:
        sock.send_multipart(parts)
    sock.close(linger=TIMEOUT_MS)


def request_all(ctx: zmq.Context, endpoint: str, payloads: list[list[bytes]]) -> list[dict]:
    """Send every payload to a REP through a DEALER, a window at a time; the decoded replies."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.connect(endpoint)
    replies = []
    for start in range(0, len(payloads), 50):
        window = payloads[start:start + 50]
        for parts in window:
            sock.send_multipart([b"", *parts])
        replies += [codec.decode(sock.recv_multipart()[1:]) for _ in window]
    sock.close(linger=0)
    return replies


def subscribe_all(ctx: zmq.Context, endpoint: str, seed: int) -> None:
    """Random subscription frames (subscribe, unsubscribe, neither) into an XPUB; then leave."""
    rng = random.Random(seed)
    sock = ctx.socket(zmq.XSUB)
    sock.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    sock.connect(endpoint)
    for _ in range(PER_SOCKET):
        sock.send(rng.choice([b"\x01", b"\x00", b""]) + rng.randbytes(rng.randint(0, 40)))
    time.sleep(0.5)  # let them arrive before the XSUB's subscriptions go away with it
    sock.close(linger=0)


@pytest.fixture(scope="module")
def clean_run(frames_folder, tmp_path_factory) -> list[dict]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    collector.start()
    result = launch(frames_folder, "--results", endpoint, "--wait-subscribers", "1", "--log-level", "error")
    assert result.returncode == 0, result.stderr
    return collector.result(60)


# --- the fuzz tests ---------------------------------------------------------------------

def test_serve_survives_malformed_messages_on_every_socket(frames_folder, clean_run):
    ctx = zmq.Context()
    with serving() as (server, control_endpoint, results, folder):
        control = Control(control_endpoint, timeout_ms=TIMEOUT_MS)
        requests = malformed(1, VALID_REQUESTS, messages.validate_request) + [
            codec.encode({"cmd": "status", "job": "ghost"}), codec.encode({"cmd": "submit", "source": "/nope"})]
        replies = request_all(ctx, control_endpoint, requests)
        assert len(replies) == len(requests) and not any(r["ok"] for r in replies)
        push_all(ctx, f"ipc://{folder}/events", malformed(2, VALID, expecting("job_start", "job_end"))
                 + ghost_job_ends(100))
        push_all(ctx, f"ipc://{folder}/detections", malformed(3, VALID, expecting("detections")))
        subscribe_all(ctx, results, seed=4)
        health = control.request(cmd="health")
        assert health["ok"] and all(health["stages"].values()), health
        got = run_job(control, results, frames_folder, "after-fuzz")
        assert [m["index"] for m in got if m["type"] == "frame"] == list(range(FOLDER_FRAMES))
        assert got[-1] == {**got[-1], "status": "ok", "frames": FOLDER_FRAMES}
        assert_same_results(got, clean_run)
        assert all(control.request(cmd="health")["stages"].values())
        control.close()
    assert server.returncode == 130  # still serving when stopped: a stage exit would have ended it with 1
    ctx.destroy(linger=0)


def socket(ctx: zmq.Context, kind: int, endpoint: str, bind: bool, timeout_ms: int = TIMEOUT_MS) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    sock.bind(endpoint) if bind else sock.connect(endpoint)
    return sock


@contextmanager
def standalone_decode(folder: Path, timeout_ms: int = TIMEOUT_MS):
    """A decode stage on its own; the test binds jobs and events (where the launcher and track would)."""
    ctx = zmq.Context()
    ends = {name: f"ipc://{folder}/{name}" for name in ("jobs", "frames", "events")}
    jobs = socket(ctx, zmq.PUSH, ends["jobs"], bind=True, timeout_ms=timeout_ms)
    events = socket(ctx, zmq.PULL, ends["events"], bind=True, timeout_ms=timeout_ms)
    frames = socket(ctx, zmq.PULL, ends["frames"], bind=False, timeout_ms=timeout_ms)
    stage = Spooled([sys.executable, "-m", "stages.decode", "--jobs", ends["jobs"], "--frames", ends["frames"],
                     "--events", ends["events"], "--log-level", "error"], cwd=ROOT, text=True)
    try:
        yield stage, jobs, frames, events
    finally:
        stage.terminate()
        stage.communicate(timeout=10)
        ctx.destroy(linger=0)


def receive(sock: zmq.Socket) -> dict:
    return codec.decode(sock.recv_multipart())


def test_decode_survives_malformed_job_requests(frames_folder, tmp_path):
    with standalone_decode(tmp_path) as (stage, jobs, frames, events):
        for parts in malformed(5, VALID[:1], expecting("job")):
            jobs.send_multipart(parts)
        jobs.send_multipart(codec.encode(messages.job_request("ghost", str(tmp_path / "nope"))))
        # A refused request that names a job ends that job with an error, so nobody waits on it.
        refused = iter(lambda: receive(events), None)
        ghost_end = next(m for m in refused if not (m["error"] or "").startswith("bad job request"))
        assert (ghost_end["type"], ghost_end["job"], ghost_end["status"]) == ("job_end", "ghost", "error")
        jobs.send_multipart(codec.encode(messages.job_request("real", str(frames_folder))))
        assert receive(events)["type"] == "job_start"
        for i, path in enumerate(sorted(frames_folder.iterdir())):
            image = receive(frames)
            assert image["index"] == i
            np.testing.assert_array_equal(image["image"], cv2.imread(str(path)))
        assert receive(events) == {**messages.job_end("real", FOLDER_FRAMES)}
        assert stage.poll() is None


# --- bugs the fuzzing found (fixed) ------------------------------------------------------------

@contextmanager
def standalone_track(folder: Path):
    """A track stage on its own: the test pushes events and detections and subscribes to results."""
    ctx = zmq.Context()
    results = f"tcp://127.0.0.1:{free_port()}"
    stage = Spooled([sys.executable, "-m", "stages.track", "--events", f"ipc://{folder}/events",
                     "--detections", f"ipc://{folder}/detections", "--results", results,
                     "--history", f"ipc://{folder}/history", "--acks", f"ipc://{folder}/acks",
                     "--metrics-link", f"ipc://{folder}/metrics", "--job-log", str(folder / "logs"),
                     "--log-level", "error"], cwd=ROOT, text=True)
    events = ctx.socket(zmq.PUSH)
    events.connect(f"ipc://{folder}/events")
    detections = ctx.socket(zmq.PUSH)
    detections.connect(f"ipc://{folder}/detections")
    subscriber = sockets.connect(ctx, "results", results)
    subscribed(subscriber)
    try:
        yield stage, events, detections, subscriber
    finally:
        stage.terminate()
        stage.communicate(timeout=10)
        ctx.destroy(linger=0)


def subscribed(subscriber: zmq.Socket, timeout_s: float = 60.0) -> None:
    """Wait until the SUB socket has met the stage's XPUB (a stage starting under load takes seconds to bind):
    a fixed sleep lost the first job's messages to the slow joiner."""
    monitor = subscriber.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        assert monitor.poll(int(timeout_s * 1000)), "the track stage's results socket never answered"
        recv_monitor_message(monitor)
    finally:
        subscriber.disable_monitor()
        monitor.close(linger=0)
    time.sleep(0.2)  # the subscription, sent on the handshake, reaches the XPUB


def send_tiny_job(events: zmq.Socket, detections: zmq.Socket, job: str, **options) -> None:
    events.send_multipart(codec.encode(messages.job_start(job, "x", 30.0, 64, 48, 1, options=options)))
    detections.send_multipart(codec.encode(messages.detections(job, 0, 0.0, [])))
    events.send_multipart(codec.encode(messages.job_end(job, 1)))


def published_job_end(subscriber: zmq.Socket, job: str, timeout_ms: int = BUG_TIMEOUT_MS) -> dict | None:
    """The job_end track publishes for ``job``, or None if none comes in time."""
    deadline = time.monotonic() + timeout_ms / 1000
    while subscriber.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        message = codec.decode(subscriber.recv_multipart()[1:])
        if (message["type"], message["job"]) == ("job_end", job):
            return message
    return None


def test_track_is_not_blocked_by_a_job_that_never_starts(tmp_path):
    with standalone_track(tmp_path) as (stage, events, detections, subscriber):
        detections.send_multipart(codec.encode(messages.detections("ghost", 0, 0.0, [])))
        time.sleep(0.5)  # the ghost is heard of first
        send_tiny_job(events, detections, "real")
        assert published_job_end(subscriber, "real") is not None


def test_track_survives_a_list_as_message_type(tmp_path):
    with standalone_track(tmp_path) as (stage, events, detections, subscriber):
        events.send(msgpack.packb({"type": []}))
        send_tiny_job(events, detections, "real")
        assert published_job_end(subscriber, "real") is not None


@pytest.mark.parametrize("options", [{"lookahead": "8"}, {"detector": ["hmr2"]}])
def test_track_survives_job_options_of_the_wrong_type(tmp_path, options):
    with standalone_track(tmp_path) as (stage, events, detections, subscriber):
        send_tiny_job(events, detections, "odd", **options)
        published_job_end(subscriber, "odd", timeout_ms=2000)
        send_tiny_job(events, detections, "real")
        assert published_job_end(subscriber, "real") is not None


def test_decode_ends_a_job_with_a_non_numeric_fps_with_an_error(frames_folder, tmp_path):
    with standalone_decode(tmp_path, BUG_TIMEOUT_MS) as (stage, jobs, frames, events):
        jobs.send_multipart(codec.encode(messages.job_request("odd", str(frames_folder), {"fps": "fast"})))
        jobs.send_multipart(codec.encode(messages.job_request("ghost", str(tmp_path / "nope"))))
        ends = {m["job"]: m["status"] for m in (receive(events), receive(events)) if m["type"] == "job_end"}
        assert ends == {"odd": "error", "ghost": "error"}


def test_serve_answers_a_list_as_command(tmp_path):
    with serving("--workers", "0") as (server, control_endpoint, results, folder):
        control = Control(control_endpoint, timeout_ms=BUG_TIMEOUT_MS)
        try:
            assert control.request(cmd=[])["ok"] is False
            assert control.request(cmd="health")["ok"]
        finally:
            control.close()


def test_serve_survives_a_malformed_status_message(tmp_path):
    ctx = zmq.Context()
    with serving("--workers", "0") as (server, control_endpoint, results, folder):
        push_all(ctx, f"ipc://{folder}/status", [[b"\xc1"]])
        time.sleep(1.0)  # read by the serve loop, not while answering the next request
        control = Control(control_endpoint, timeout_ms=BUG_TIMEOUT_MS)
        try:
            assert control.request(cmd="health")["ok"] and server.poll() is None
        finally:
            control.close()
    ctx.destroy(linger=0)


def test_detect_survives_an_empty_jpeg(tmp_path):
    ctx = zmq.Context()
    frames = socket(ctx, zmq.PUSH, f"ipc://{tmp_path}/frames", bind=True)
    detections = socket(ctx, zmq.PULL, f"ipc://{tmp_path}/detections", bind=True, timeout_ms=2 * BUG_TIMEOUT_MS)
    stage = Spooled([sys.executable, "-m", "stages.detect", "--frames", f"ipc://{tmp_path}/frames",
                     "--detections", f"ipc://{tmp_path}/detections", "--log-level", "error"], cwd=ROOT, text=True)
    try:
        frames.send_multipart(codec.encode(messages.image("odd", 0, 0.0, jpeg=b"", width=4, height=4)))
        frames.send_multipart(codec.encode(messages.image("real", 0, 0.0, np.zeros((48, 64, 3), np.uint8))))
        replies = [receive(detections) for _ in range(2)]
        assert sorted(r["job"] for r in replies) == ["odd", "real"]
    finally:
        stage.terminate()
        stage.communicate(timeout=10)
        ctx.destroy(linger=0)
