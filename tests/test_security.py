"""CURVE on real tcp sockets: who gets messages and who gets nothing; the bind warning; the keys CLI."""
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from bus import codec, keys as keys_cli, messages, security, sockets
from bus.client import Control, subscribe
from bus.security import Curve

from conftest import ROOT, free_port

WAIT_S = 1.0


@pytest.fixture
def keys(tmp_path):
    """A server pair, an authorized client pair, and an intruder pair the server does not know."""
    folder = tmp_path / "keys"
    for name in ("server", "client", "intruder"):
        security.generate(name, folder)
    security.authorize(folder / "client.key", folder)
    return folder


@pytest.fixture
def server_ctx():
    ctx = zmq.Context()
    yield ctx
    security.stop_authenticator(ctx)
    ctx.destroy(linger=0)


@pytest.fixture
def client_ctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


class Sender(threading.Thread):
    """Sends ``make(i)`` on ``sock`` every 20 ms until stopped (dropping what cannot go now)."""

    def __init__(self, sock, make):
        super().__init__(daemon=True)
        self.sock, self.make, self.stopped = sock, make, threading.Event()

    def run(self):
        i = 0
        while not self.stopped.is_set():
            try:
                sockets.send(self.sock, self.make(i), zmq.NOBLOCK)
            except zmq.Again:
                pass
            i += 1
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join()


def count_received(socks, link, seconds=WAIT_S):
    """Messages each socket receives in ``seconds``; then closes them without lingering
    (a socket that never completed its handshake would otherwise hold up ``ctx.destroy``)."""
    counts = {sock: 0 for sock in socks}
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for sock in dict(poller.poll(int(left * 1000) + 1)):
            sockets.receive(sock, link)
            counts[sock] += 1
    for sock in socks:
        sock.close(linger=0)
    return [counts[sock] for sock in socks]


def test_results_reach_only_the_authorized_subscriber(keys, server_ctx, client_ctx, endpoint):
    publisher = sockets.bind(server_ctx, "results", endpoint, security=Curve(keys, "server"))
    authorized = sockets.connect(client_ctx, "results", endpoint, security=Curve(keys, "client", "server"))
    no_keys = sockets.connect(client_ctx, "results", endpoint)
    wrong_keys = sockets.connect(client_ctx, "results", endpoint, security=Curve(keys, "intruder", "server"))
    with Sender(publisher, lambda i: messages.job_end("j", i)):
        got = count_received([authorized, no_keys, wrong_keys], "results")
    assert got[0] > 10 and got[1:] == [0, 0]


def test_client_with_the_wrong_server_key_gets_nothing(keys, server_ctx, client_ctx, endpoint):
    publisher = sockets.bind(server_ctx, "results", endpoint, security=Curve(keys, "server"))
    # the client pair is authorized, but it expects the intruder as server: the server cannot prove that
    impostor_check = sockets.connect(client_ctx, "results", endpoint, security=Curve(keys, "client", "intruder"))
    with Sender(publisher, lambda i: messages.job_end("j", i)):
        assert count_received([impostor_check], "results") == [0]


def test_subscribe_with_security(keys, server_ctx, client_ctx, endpoint):
    publisher = sockets.bind(server_ctx, "results", endpoint, security=Curve(keys, "server"))
    with Sender(publisher, lambda i: messages.job_end("j", i)):
        stream = subscribe(endpoint, timeout_ms=5000, ctx=client_ctx, security=Curve(keys, "client", "server"))
        assert next(stream)["type"] == "job_end"
        stream.close()
        with pytest.raises(TimeoutError):
            next(subscribe(endpoint, timeout_ms=int(WAIT_S * 1000), ctx=client_ctx))


def test_control_with_security(keys, server_ctx, client_ctx, endpoint):
    replier = sockets.bind(server_ctx, "control", endpoint, security=Curve(keys, "server"))

    def answer_until_idle():
        while replier.poll(int(WAIT_S * 1000) + 500):
            replier.recv_multipart()
            replier.send_multipart(codec.encode({"ok": True}))

    thread = threading.Thread(target=answer_until_idle, daemon=True)
    thread.start()
    control = Control(endpoint, ctx=client_ctx, security=Curve(keys, "client", "server"))
    assert control.request(cmd="ping") == {"ok": True}
    control.close()
    intruder = Control(endpoint, timeout_ms=int(WAIT_S * 1000), ctx=client_ctx,
                       security=Curve(keys, "intruder", "server"))
    with pytest.raises(TimeoutError):
        intruder.request(cmd="ping")
    intruder.close()
    thread.join()


def test_frames_reach_only_the_authorized_worker(keys, server_ctx, client_ctx, endpoint):
    decode = sockets.bind(server_ctx, "frames", endpoint, security=Curve(keys, "server"))
    worker = sockets.connect(client_ctx, "frames", endpoint, security=Curve(keys, "client", "server"))
    intruder = sockets.connect(client_ctx, "frames", endpoint, security=Curve(keys, "intruder", "server"))
    pixels = np.zeros((8, 8, 3), np.uint8)
    with Sender(decode, lambda i: messages.image("j", i, i * 33.3, pixels)):
        got = count_received([worker, intruder], "frames")
    assert got[0] > 10 and got[1] == 0


def test_worker_without_keys_gets_no_frames(keys, server_ctx, client_ctx, endpoint):
    decode = sockets.bind(server_ctx, "frames", endpoint, security=Curve(keys, "server"))
    worker = sockets.connect(client_ctx, "frames", endpoint)
    with Sender(decode, lambda i: messages.image("j", i, 0.0, np.zeros((8, 8, 3), np.uint8))):
        assert count_received([worker], "frames") == [0]


def test_binding_every_interface_warns_unless_curve(keys, server_ctx, capfd):
    sockets.bind(server_ctx, "results", f"tcp://0.0.0.0:{free_port()}").close()
    assert "warning: results binds tcp://0.0.0.0" in capfd.readouterr().err
    sockets.bind(server_ctx, "results", f"tcp://0.0.0.0:{free_port()}", security=Curve(keys, "server")).close()
    sockets.bind(server_ctx, "results", f"tcp://127.0.0.1:{free_port()}").close()
    assert capfd.readouterr().err == ""


def test_one_authenticator_per_context(keys, server_ctx, tmp_path):
    sockets.bind(server_ctx, "results", f"tcp://127.0.0.1:{free_port()}", security=Curve(keys, "server")).close()
    sockets.bind(server_ctx, "control", f"tcp://127.0.0.1:{free_port()}", security=Curve(keys, "server")).close()
    other = tmp_path / "other"
    security.generate("server", other)
    with pytest.raises(ValueError, match="already authorizes"):
        sockets.bind(server_ctx, "frames", f"tcp://127.0.0.1:{free_port()}", security=Curve(other, "server"))


def test_ipc_links_go_without_curve(keys, server_ctx, client_ctx, tmp_path):
    endpoint = f"ipc://{tmp_path / 'events'}"
    track = sockets.bind(server_ctx, "events", endpoint, security=Curve(keys, "server"))
    decode = sockets.connect(client_ctx, "events", endpoint)
    sockets.send(decode, messages.job_end("j", 0))
    assert track.poll(2000) and not track.curve_server


def test_one_socket_serves_local_workers_on_ipc_and_remote_ones_with_curve(keys, server_ctx, client_ctx, tmp_path):
    local, remote = f"ipc://{tmp_path / 'frames'}", f"tcp://127.0.0.1:{free_port()}"
    decode = sockets.bind(server_ctx, "frames", remote, security=Curve(keys, "server"), also=(local,))
    workers = [sockets.connect(client_ctx, "frames", local),
               sockets.connect(client_ctx, "frames", remote, security=Curve(keys, "client", "server")),
               sockets.connect(client_ctx, "frames", remote)]
    with Sender(decode, lambda i: messages.image("j", i, 0.0, np.zeros((8, 8, 3), np.uint8))):
        got = count_received(workers, "frames")
    assert got[0] > 5 and got[1] > 5 and got[2] == 0


def test_keys_cli(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "store"
    monkeypatch.setenv("POSEBUS_KEYS", str(folder))
    assert keys_cli.main(["generate", "server"]) == 0
    assert keys_cli.main(["generate", "backend"]) == 0
    assert keys_cli.main(["authorize", str(folder / "backend.key")]) == 0
    assert keys_cli.main(["authorize", str(folder / "backend.key_secret")]) == 1
    assert keys_cli.main(["generate", "server"]) == 1  # never overwrites a key
    capsys.readouterr()

    assert keys_cli.main(["show", "server"]) == 0
    server_public = capsys.readouterr().out.strip()
    assert len(server_public) == 40 and server_public.encode() == security.public_key("server", folder)
    assert keys_cli.main(["show", "server", "--secret"]) == 0
    assert zmq.curve_public(capsys.readouterr().out.strip().encode()) == server_public.encode()

    assert keys_cli.main(["list"]) == 0
    listing = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(name, kind) for name, _, kind in listing] == [
        ("backend", "pair"), ("server", "pair"), ("authorized/backend", "public")]
    assert listing[1][1] == server_public

    assert stat.S_IMODE((folder / "server.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert keys_cli.main(["--keys", str(tmp_path / "elsewhere"), "generate", "x"]) == 0
    assert (tmp_path / "elsewhere" / "x.key_secret").exists()


def test_curve_between_network_namespaces(keys, namespaces):
    a, b = namespaces.a, namespaces.b
    endpoint = f"tcp://10.77.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def peer(namespace, *args):
        return subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "tests/curve_peer.py",
                                 *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    publisher = peer(a, "publish", endpoint, keys, 6)
    try:
        assert publisher.stdout.readline().strip() == "bound"
        counters = [peer(b, "count", endpoint, keys, name, 2) for name in ("client", "-", "intruder")]
        counts = [int(c.communicate(timeout=20)[0]) for c in counters]
    finally:
        publisher.kill()
        _, publisher_err = publisher.communicate()
    assert counts[0] > 10 and counts[1:] == [0, 0]
    assert "warning" not in publisher_err  # CURVE on: binding a non-loopback address is fine
