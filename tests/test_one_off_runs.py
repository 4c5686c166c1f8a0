"""One-off runs (``launch.py VIDEO`` without endpoints) side by side: each takes ports no other run holds,
prints them and states them in its job_start; ``serve`` keeps its well-known ports."""
import sys

import pytest

from bench.spooled import Spooled
from bench.timing import EPHEMERAL_PORTS, free_port
from launcher.cli import default_endpoints, parse_args

from conftest import ROOT, VIDEO, Collector, stop


def start_one_off(job: str, log_dir) -> Spooled:
    return Spooled([sys.executable, "launch.py", str(VIDEO), "--job", job, "--max-frames", "12",
                    "--wait-subscribers", "1", "--job-log", str(log_dir), "--log-level", "error"], cwd=ROOT, text=True)


def printed_endpoints(run: Spooled) -> dict[str, str]:
    """The results and history endpoints a one-off run prints on its stderr (before it publishes anything)."""
    found = run.wait_for(r"posebus: results (tcp://\S+), history (tcp://\S+)", timeout=120)
    return {"results": found.group(1), "history": found.group(2)}


def test_two_one_off_runs_at_once_each_on_its_own_ports(tmp_path):
    runs = {job: start_one_off(job, tmp_path / job) for job in ("first", "second")}
    try:
        endpoints = {job: printed_endpoints(run) for job, run in runs.items()}  # both running, neither published
        assert endpoints["first"]["results"] != endpoints["second"]["results"]
        collectors = {job: Collector(found["results"]) for job, found in endpoints.items()}
        for collector in collectors.values():
            collector.start()
        for job, collector in collectors.items():
            received = collector.result(240)
            start, end = received[0], received[-1]
            assert start["type"] == "job_start" and start["job"] == job
            assert start["endpoints"] == endpoints[job]
            assert start["options"]["max_frames"] == 12
            assert end["type"] == "job_end" and end["status"] == "ok" and end["frames"] == 12, end
        for job, run in runs.items():
            assert run.wait(120) == 0, stop(run)
    finally:
        for run in runs.values():
            stop(run)


def test_free_ports_for_a_pipeline_are_below_the_ephemeral_range():
    """A freed port of that range may become any new connection's source port before the stage binds it."""
    if not EPHEMERAL_PORTS.exists():
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range")
    low = int(EPHEMERAL_PORTS.read_text().split()[0])
    ports = {free_port() for _ in range(50)}
    assert all(1024 <= port and port + 8 < low for port in ports), sorted(ports)


def test_serve_and_explicit_endpoints_keep_their_ports():
    served = parse_args(["serve"])
    default_endpoints(served)
    assert (served.results, served.history, served.metrics) == (
        "tcp://127.0.0.1:5555", "tcp://127.0.0.1:5562", "tcp://127.0.0.1:5563")
    explicit = parse_args(["clip.mp4", "--results", "tcp://127.0.0.1:6000"])
    default_endpoints(explicit)
    assert (explicit.history, explicit.metrics) == ("tcp://127.0.0.1:6007", "tcp://127.0.0.1:6008")
    one_off = parse_args(["clip.mp4"])
    default_endpoints(one_off)
    assert {one_off.results, one_off.history, one_off.metrics} == {"tcp://127.0.0.1:*"}
