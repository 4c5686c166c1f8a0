"""A detect worker on another host joins a running pipeline over tcp with CURVE; cutting its link loses no frame.

The two hosts are network namespaces joined by a veth pair (the ``namespaces``
fixture): the pipeline runs on A with ``--worker-links`` on 10.77.0.1, the
workers run on B with ``launch.py worker``.
"""
import json
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from bus import security
from bus.client import Control
from bus.log import read

from conftest import ROOT, VIDEO, free_port, ip, launch, serving

JOB = "netns"


class Process:
    """A process started (in a network namespace, if one is named), its stderr read in the background."""

    def __init__(self, namespace: str | None, *args: str):
        namespaced = ["ip", "netns", "exec", namespace] if namespace else []
        self.popen = subprocess.Popen([*namespaced, sys.executable, *map(str, args)],
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pid = self.popen.pid  # ip netns exec execs the command: the same process
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self.stderr.extend(self.popen.stderr), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.stderr):
            assert self.popen.poll() is None and time.monotonic() < deadline, "".join(self.stderr)
            time.sleep(0.1)

    def stop(self) -> None:
        self.popen.kill()
        self.popen.wait()
        self._reader.join(5)


@pytest.fixture
def stores(tmp_path):
    """Host A's key store (the pipeline's pair "server", a backend pair, the worker authorized) and host B's
    (the worker's pair, an intruder's pair nobody authorized, the server's public key), set up as
    docs/security.md tells."""
    a, b = tmp_path / "keys-a", tmp_path / "keys-b"
    for name, store in (("server", a), ("backend", a), ("worker", b), ("intruder", b)):
        security.generate(name, store)
    security.authorize(b / "worker.key", a)
    security.authorize(a / "backend.key", a)
    shutil.copy(a / "server.key", b / "server.key")
    return a, b


def sent_by(status_table: str, worker: str) -> int:
    """The OUT column of ``launch.py status --once`` for a worker started outside the launcher."""
    for row in status_table.splitlines():
        if row.startswith(f"detect {worker} "):
            return int(row.split()[4])
    return 0


def test_worker_links_off_loopback_need_curve():
    everywhere = f"tcp://0.0.0.0:{free_port()}"
    refused = launch(VIDEO, "--worker-links", everywhere, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"posebus: error: --worker-links {everywhere} reaches other machines: turn CURVE on with --curve-name "
        "(see docs/security.md)"]


def test_worker_links_serve_one_detector_kind():
    """Remote workers would all join the default kind's pool, unseen by health: refused at start, nothing run."""
    links = f"tcp://127.0.0.1:{free_port()}"
    refused = launch("serve", "--detectors", "blazepose,hmr2", "--worker-links", links,
                     "--control", f"tcp://127.0.0.1:{free_port()}", timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "posebus: error: --worker-links serves one detector kind, but --detectors names blazepose, hmr2 (workers on "
        "other hosts would all join the blazepose pool): start a pipeline per kind"]


def test_health_counts_a_worker_on_another_host_while_it_beats(tmp_path):
    """serve with --workers 0 and --worker-links: not ready until a remote worker beats, ready while it does."""
    links = f"tcp://127.0.0.1:{free_port()}"
    with serving("--workers", "0", "--worker-links", links, "--heartbeat-timeout", "3") as (server, control_endpoint,
                                                                                            _, _):
        control = Control(control_endpoint, timeout_ms=10_000)
        worker = None
        try:
            health = control.health()
            assert not health["ready"] and health["detectors"]["blazepose"] == {"workers": 0, "ready": 0, "remote": 0}
            worker = Process(None, "launch.py", "worker", "--worker-links", links, "--log-level", "info")
            health = control.wait_until_ready(120)
            assert health["detectors"]["blazepose"] == {"workers": 1, "ready": 1, "remote": 1}
            worker.stop()
            deadline = time.monotonic() + 30
            while control.health()["ready"] and time.monotonic() < deadline:
                time.sleep(0.25)
            assert control.health()["detectors"]["blazepose"]["remote"] == 0 and server.poll() is None
        finally:
            if worker is not None:
                worker.stop()
            control.close()


def test_remote_worker_takes_frames_and_a_cut_link_loses_none(namespaces, stores, tmp_path):
    keys_a, keys_b = stores
    links = f"tcp://10.77.0.1:{free_port()}"
    results = free_port()
    metrics = f"tcp://127.0.0.1:{results + 8}"  # the launcher's default: beside the results port
    started = []
    try:
        for name in ("worker", "intruder"):
            started.append(Process(namespaces.b, "launch.py", "worker", "--worker-links", links, "--curve-keys",
                                   keys_b, "--curve-name", name, "--curve-server", "server", "--log-level", "info"))
        remote, intruder = started
        for worker in started:
            worker.wait_for("worker_ready", 120)
        launcher = Process(namespaces.a, "launch.py", VIDEO, "--workers", "1", "--worker-links", links,
                           "--curve-keys", keys_a, "--curve-name", "server", "--results", f"tcp://127.0.0.1:{results}",
                           "--job", JOB, "--out", tmp_path / "out", "--record", tmp_path / "record")
        started.append(launcher)

        remote_id = f"{socket.gethostname()}:{remote.pid}"
        deadline, table = time.monotonic() + 120, ""
        while time.monotonic() < deadline and launcher.popen.poll() is None:  # launch.py status, as a user would
            table = subprocess.run(["ip", "netns", "exec", namespaces.a, sys.executable, "launch.py", "status",
                                    "--once", "--metrics", metrics, "--curve-keys", str(keys_a),
                                    "--curve-name", "backend", "--curve-server", "server"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
            if sent_by(table, remote_id) >= 5:
                break
        assert sent_by(table, remote_id) >= 5, table
        assert ip("-n", namespaces.b, "link", "set", namespaces.veth_b, "down").returncode == 0
        assert launcher.popen.wait(240) == 0, "".join(launcher.stderr)
    finally:
        for process in started:
            process.stop()

    published = [json.loads(line) for line in (tmp_path / "out" / f"{JOB}.jsonl").read_text().splitlines()]
    frames = [m for m in published if m["type"] == "frame"]
    assert [f["index"] for f in frames] == list(range(180))  # every frame, in order, no duplicates
    assert not any(f["detection_failed"] for f in frames)  # each one really detected, none given up on
    assert published[-1]["type"] == "job_end" and published[-1]["status"] == "ok"
    by_worker = {}
    for detections in read(tmp_path / "record" / JOB / "detections.log", ("detections",)):
        by_worker.setdefault(detections["worker"], set()).add(detections["index"])
    assert len(by_worker[remote_id]) >= 5
    assert f"{socket.gethostname()}:{intruder.pid}" not in by_worker
    assert "resend_requested" in "".join(launcher.stderr)  # the frames the cut took were asked for again
    assert "without encryption" not in "".join(launcher.stderr)  # every tcp link bound with CURVE
