"""Helpers shared by the benches: interleaved trials, statistics, markdown, results files."""
from __future__ import annotations

import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "media" / "vid.mp4"
RESULTS = Path(__file__).resolve().parent / "results"
QUIET_IDLE = 0.8  # idle share of all CPUs that counts as a quiet machine


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time of processes so far, all their threads (dead ones too); 10 ms resolution."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of a process and all its descendants (those that have already exited: not counted)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        own = cpu_seconds(pid)
    except FileNotFoundError:
        return 0.0
    return own + sum(process_tree_cpu_seconds(int(child)) for child in children)


def idle_fraction(seconds: float = 0.5) -> float:
    """Share of all CPUs' time spent idle over the next ``seconds`` (from /proc/stat)."""
    def times() -> list[int]:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    before = times()
    time.sleep(seconds)
    delta = [b - a for a, b in zip(before, times())]
    return (delta[3] + delta[4]) / max(sum(delta), 1)  # idle + iowait


def wait_for_quiet(max_wait_s: float) -> bool:
    """Wait until the CPUs are at least QUIET_IDLE idle (other tenants share them); False if they never were."""
    deadline = time.monotonic() + max_wait_s
    while idle_fraction() < QUIET_IDLE:
        if time.monotonic() > deadline:
            return False
    return True


def interleaved(trials: dict[str, Callable[[], object]], rounds: int,
                max_wait_s: float | None = 10.0) -> tuple[dict[str, list], str]:
    """Run every trial once per round, rotating the order each round, each once the CPUs are quiet.

    Returns each trial's results in round order, and a sentence on how quiet the machine was.
    On a shared, noisy machine rotating spreads background load over all variants
    instead of letting it land on whichever ran during a busy spell. ``max_wait_s=None``: no waiting.
    """
    names = list(trials)
    results: dict[str, list] = {name: [] for name in names}
    busy = 0
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            busy += max_wait_s is not None and not wait_for_quiet(max_wait_s)
            results[name].append(trials[name]())
            print(f"  round {round_ + 1}/{rounds}: {name} done", file=sys.stderr)
    if max_wait_s is None:
        return results, "Trials did not wait for a quiet machine."
    return results, (f"Each trial waited (up to {max_wait_s:.0f} s) for ≥ {QUIET_IDLE:.0%} idle CPU; "
                     f"{busy} of {rounds * len(names)} started on a busy machine.")


def median(values: Iterable[float]) -> float:
    return float(np.median(list(values)))


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """``median (min–max)`` of trial results."""
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def percentiles(values: Iterable[float], *qs: float) -> list[float]:
    return [float(v) for v in np.percentile(list(values), qs)]


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORTS_BELOW_EPHEMERAL = 16384  # where free_port picks, just below the ephemeral range


def free_port() -> int:
    """A tcp port on loopback nobody holds now, for a pipeline started next to bind, picked below the system's
    ephemeral range: a port from that range, once freed, may become the source port of any connection made on
    this machine (other tests' sockets retry theirs every 100 ms) before the stage binds it seconds later, and
    that stage then fails ('Address already in use') while its subscribers wait for results that never come."""
    try:
        low = int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: the system's pick
        low = 0
    with socket.socket() as s:
        while low > PORTS_BELOW_EPHEMERAL:
            port = random.randrange(low - PORTS_BELOW_EPHEMERAL, low - 16)  # +8 (the metrics port beside) too
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish(name: str, section: str) -> None:
    """Print a bench's markdown section and keep it as bench/results/<name>.md."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(section.rstrip() + "\n")
    print(section)
