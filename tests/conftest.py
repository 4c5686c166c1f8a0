import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VIDEO = SHARED / "media" / "vid.mp4"
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def endpoint():
    return f"tcp://127.0.0.1:{free_port()}"


class Collector(threading.Thread):
    """Subscribes to a results endpoint in the background and keeps every message of a run."""

    def __init__(self, endpoint: str, jobs: int = 1, timeout_ms: int = 120_000):
        super().__init__(daemon=True)
        from bus.client import subscribe

        self.messages: list[dict] = []
        self.error: Exception | None = None
        self._stream = subscribe(endpoint, timeout_ms=timeout_ms)
        self._jobs = jobs
        self.subscribed = threading.Event()

    def run(self):
        ended = 0
        try:
            for message in self._stream:
                self.messages.append(message)
                ended += message["type"] == "job_end"
                if ended == self._jobs:
                    break
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            self._stream.close()

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


def final_state(control, job: str, wait_s: float = 5.0) -> str:
    """The launcher hears of a job's end on another socket than the backend does: allow it a moment."""
    deadline = time.monotonic() + wait_s
    while (state := control.status(job)["state"]) in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    return state
