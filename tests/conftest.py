from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.spooled import Spooled
from bench.timing import free_port

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VIDEO = SHARED / "media" / "vid.mp4"
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from bus.client import Control


@pytest.fixture
def endpoint():
    return f"tcp://127.0.0.1:{free_port()}"


class Collector(threading.Thread):
    """Subscribes to a results endpoint in the background and keeps every message of a run."""

    def __init__(self, endpoint: str, jobs: int = 1, timeout_ms: int = 120_000):
        super().__init__(daemon=True)
        self.messages: list[dict] = []
        self.error: Exception | None = None
        self._endpoint, self._jobs, self._timeout_ms = endpoint, jobs, timeout_ms
        self.subscribed = threading.Event()  # the publisher answered the subscriber's handshake

    def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        """Until the publisher (already running) has answered, and its subscription had a moment to arrive: what
        it publishes from then on is kept (a fixed 0.5 s was too short on a loaded machine). The monitor is
        attached just after the connect, so a handshake quicker than that goes unseen: then ``timeout_s``."""
        self.subscribed.wait(timeout_s)
        time.sleep(0.2)

    def run(self):
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        from bus import sockets

        ctx = zmq.Context.instance()
        sock = sockets.connect(ctx, "results", self._endpoint)
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        ended = 0
        try:
            while ended < self._jobs:
                ready = dict(poller.poll(self._timeout_ms))
                if not ready:
                    raise TimeoutError(f"no message from {self._endpoint} for {self._timeout_ms} ms")
                if monitor in ready:
                    recv_monitor_message(monitor)
                    self.subscribed.set()
                if sock in ready:
                    message = sockets.receive(sock, "results")
                    self.messages.append(message)
                    ended += message["type"] == "job_end"
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)

    def result(self, timeout: float = 120) -> list[dict]:
        self.join(timeout)
        assert not self.is_alive(), "collector still waiting"
        if self.error:
            raise self.error
        return self.messages


def launch(*args: str, timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "launch.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"


def stop(server: subprocess.Popen, seconds: float = 20, sig: int = signal.SIGINT, stderr: Path | None = None) -> str:
    """Signal a launcher to stop and wait for it.

    Returns what it wrote to stderr (a ``Spooled`` process's, or the file ``stderr``). If it has not
    stopped after ``seconds``, it is asked for its threads' stacks (SIGUSR1), killed, and
    the failure shows the end of its stderr.
    """
    if server.poll() is None:
        server.send_signal(sig)
    try:
        said = server.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGUSR1)
        time.sleep(1)
        server.kill()
        said = server.communicate()[1]
        said = said or (stderr.read_text() if stderr else "")
        raise AssertionError(f"the launcher did not stop within {seconds} s; its stderr ends:\n"
                             f"{said[-6000:]}") from None
    return said or (stderr.read_text() if stderr else "")


@contextmanager
def serving(*extra: str, env: dict[str, str] | None = None):
    """``launch.py serve`` on free ports; yields (process, control endpoint, results endpoint, ipc folder)."""
    control, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    server = Spooled([sys.executable, "launch.py", "serve", "--results", results, "--control", control,
                      "--log-level", "error", *extra], cwd=ROOT, text=True, env=env)
    failed = False
    try:
        yield server, control, results, ipc_folder(server.pid)
    except BaseException:
        failed = True
        raise
    finally:
        said = stop(server, sig=signal.SIGTERM)
        if failed:  # pytest shows it beside the failure
            print(f"launch.py serve's stderr ends:\n{said[-4000:]}")


def failing_detector(folder: Path, error: str) -> dict[str, str]:
    """The environment of a real run whose detector raises ``RuntimeError(error)`` on every batch: a
    ``sitecustomize`` module in ``folder``, on the PYTHONPATH the stages inherit, wraps ``detectors.create``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"""import builtins
import sys

_import = builtins.__import__


def _failing(detector):
    def detect(images):
        raise RuntimeError({error!r})
    detector.detect = detect
    return detector


def _import_then_patch(name, *args, **kwargs):
    module = _import(name, *args, **kwargs)
    package = sys.modules.get("detectors")
    if hasattr(package, "create") and not hasattr(package, "_unpatched_create"):  # once, when it is whole
        package._unpatched_create = package.create
        package.create = lambda *a, **k: _failing(package._unpatched_create(*a, **k))
    return module


builtins.__import__ = _import_then_patch
""")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)])}


def ipc_folder(pid: int) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for child in children(pid):
            found = re.search(r"ipc://(/[^\x00]*)/\w+", Path(f"/proc/{child}/cmdline").read_bytes().decode())
            if found:
                return Path(found.group(1))
        time.sleep(0.1)
    raise AssertionError("no stage with an ipc endpoint started")


def run_job(control: Control, results: str, source: Path | str, job: str, **options) -> list[dict]:
    """Submit a job to ``launch.py serve``; its published messages, up to its job_end."""
    collector = Collector(results, timeout_ms=60_000)
    collector.start()
    collector.wait_subscribed()
    assert control.submit(str(source), job=job, **options) == job
    return [m for m in collector.result(90) if m["job"] == job]


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@dataclass(frozen=True)
class Hosts:
    a: str  # network namespace of host A, 10.77.0.1 on veth_a
    b: str  # of host B, 10.77.0.2 on veth_b
    veth_a: str
    veth_b: str


@pytest.fixture
def namespaces():
    """Two hosts: network namespaces A (10.77.0.1) and B (10.77.0.2) joined by a veth pair, each with its
    loopback up; removed afterwards. Skips where namespaces cannot be made (not root, no ip command)."""
    hosts = Hosts(f"pbA{os.getpid()}", f"pbB{os.getpid()}", f"va{os.getpid()}", f"vb{os.getpid()}")
    try:
        added = ip("netns", "add", hosts.a)
    except FileNotFoundError:
        pytest.skip("no ip command")
    if added.returncode:
        pytest.skip(f"cannot create a network namespace (needs root): {added.stderr.strip()}")
    try:
        for command in (("netns", "add", hosts.b),
                        ("link", "add", hosts.veth_a, "netns", hosts.a, "type", "veth",
                         "peer", "name", hosts.veth_b, "netns", hosts.b),
                        ("-n", hosts.a, "addr", "add", "10.77.0.1/24", "dev", hosts.veth_a),
                        ("-n", hosts.b, "addr", "add", "10.77.0.2/24", "dev", hosts.veth_b),
                        ("-n", hosts.a, "link", "set", hosts.veth_a, "up"),
                        ("-n", hosts.b, "link", "set", hosts.veth_b, "up"),
                        ("-n", hosts.a, "link", "set", "lo", "up"),
                        ("-n", hosts.b, "link", "set", "lo", "up")):
            result = ip(*command)
            if result.returncode:
                pytest.skip(f"cannot set up the veth pair: ip {' '.join(command)}: {result.stderr.strip()}")
        yield hosts
    finally:
        ip("netns", "del", hosts.a)  # takes the veth pair with it
        ip("netns", "del", hosts.b)


def final_state(control, job: str, wait_s: float = 5.0) -> str:
    """The launcher hears of a job's end on another socket than the backend does: allow it a moment."""
    deadline = time.monotonic() + wait_s
    while (state := control.status(job)["state"]) in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    return state
