"""The launcher's side of the metrics: relaying the stages' snapshots, and ``launch.py status``.

::

    decode ----PUB--+                                        +--SUB launch.py status
    detect-N --PUB--+--> SUB (stage_metrics) relay XPUB (metrics) --SUB bus.tap --link metrics
    track -----PUB--+    in the launcher        |            +--SUB any monitor
                                                +--> Prometheus exporter (--prometheus PORT)

Stages connect, the launcher binds: stages never block on metrics (a PUB drops
what nobody takes) and a stage that restarts simply reconnects. The relay runs
in a thread of the launcher with its own two sockets, so a busy launcher loop
never delays the snapshots. Topics are ``metrics/<stage>/<worker>``.

The snapshots double as heartbeats: a stage publishes them from its main loop,
so a stage that stops sending them is stuck (or stopped), not merely busy
elsewhere. The relay notes when each process (by pid) was last heard from;
``overdue`` says which stages have been silent too long.
"""
from __future__ import annotations

import sys
import threading
import time

import zmq

from bus import sockets
from bus.security import Curve

STAGE_ORDER = ("decode", "detect", "track")
NO_METRICS_TIMEOUT_S = 5.0  # --once gives up when no stage has said anything for this long
STARTUP_GRACE_S = 120.0  # before its first heartbeat a stage imports and loads models: allow at least this


class MetricsRelay(threading.Thread):
    """Takes every stage's metrics on ``stage_endpoint`` and re-publishes them on ``public_endpoint``.

    Both sockets are bound here, in the caller's thread, so that an endpoint in
    use fails the launcher at start; the thread alone uses them afterwards.
    """

    def __init__(self, ctx: zmq.Context, stage_endpoint: str, public_endpoint: str,
                 security: Curve | None = None, prometheus_port: int | None = None,
                 remote_stage_endpoints: tuple[str, ...] = ()):
        super().__init__(name="metrics-relay", daemon=True)
        # Workers on other hosts (launch.py --worker-links) send theirs to the remote endpoint, with CURVE.
        self.inbox = sockets.bind(ctx, "stage_metrics", stage_endpoint, security=security,
                                  also=remote_stage_endpoints)
        self.outbox = sockets.bind(ctx, "metrics", public_endpoint, security=security)
        self.exporter = None
        if prometheus_port is not None:
            from launcher.prometheus import PrometheusExporter  # prometheus-client is optional

            self.exporter = PrometheusExporter(prometheus_port)
        self.bad = sockets.Counter("launch")
        # (host, pid) -> (stage, time.monotonic() of its latest snapshot): the host too, since workers on
        # other hosts (--worker-links) report here and a pid is unique on one host only.
        self.last_heard: dict[tuple[str, int], tuple[str, float]] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.inbox, zmq.POLLIN)
        poller.register(self.outbox, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                ready = dict(poller.poll(100))
                if self.outbox in ready:
                    self.outbox.recv()  # a (un)subscription: XPUB hands them up; nothing to do with them
                if self.inbox in ready:
                    self.relay_one()
        finally:
            self.inbox.close()
            self.outbox.close()

    def relay_one(self) -> None:
        parts = self.inbox.recv_multipart(copy=False)
        try:
            message = sockets.parse(parts, "stage_metrics")
        except sockets.MALFORMED as exc:
            self.bad.drop(exc)
            return
        self.last_heard[(message["host"], message["pid"])] = (message["stage"], time.monotonic())
        self.outbox.send_multipart(parts, copy=False)  # as it came: topic and encoding are already right
        if self.exporter is not None:
            self.exporter.update(message)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def overdue(started: dict[str, float], last_heard: dict[str, float], now: float, timeout: float,
            startup_grace: float = STARTUP_GRACE_S, listening_since: float = float("-inf")) -> dict[str, float]:
    """The stages silent for longer than ``timeout`` seconds, each with how long it has been silent.

    ``started``: stage name -> when its process started; ``last_heard``: stage name -> its latest
    heartbeat, absent before the first. All times on one monotonic clock. Until its first heartbeat a
    stage is silent since it started and has ``max(timeout, startup_grace)``. Silence is counted from
    ``listening_since`` at the earliest: while the watcher itself was stopped (Ctrl-Z, a host too busy
    to run it) nobody was listening, so the stages' heartbeats of that time are still queued, not missing.
    """
    late = {}
    for name, start in started.items():
        heard = last_heard.get(name)
        silent = now - max(start if heard is None else heard, listening_since)
        if silent > (timeout if heard is not None else max(timeout, startup_grace)):
            late[name] = silent
    return late


# --- launch.py status ------------------------------------------------------------------------------

COLUMNS = ("STAGE", "FPS", "IN", "OUT", "QUEUE", "P50 ms", "P95 ms", "E2E P50", "E2E P95", "DROPS", "ERRORS",
           "GPU MB", "AGE s")


def row_label(message: dict) -> str:
    """``detect-0`` as the launcher names its workers; ``detect HOST:PID`` for a stage run alone."""
    worker, stage = message["worker"], message["stage"]
    return worker if worker.startswith(stage) else f"{stage} {worker}"


def table_rows(latest: dict[str, dict], now: float) -> list[tuple[str, ...]]:
    """One row per stage process, pipeline order; ``now`` (wall clock) gives each snapshot's age."""
    def order(message):
        stage = message["stage"]
        return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), row_label(message)

    rows = []
    for m in sorted(latest.values(), key=order):
        own, e2e = m["latency_ms"].get("stage", {}), m["latency_ms"].get("end_to_end", {})
        gpu = m.get("gpu_memory")
        rows.append((row_label(m), f"{m['fps']:.1f}", str(m["messages_in"]), str(m["messages_out"]), str(m["queue"]),
                     _ms(own.get("p50")), _ms(own.get("p95")), _ms(e2e.get("p50")), _ms(e2e.get("p95")),
                     str(m["drops"]), str(m["errors"]), "-" if gpu is None else f"{gpu / 2**20:.0f}",
                     f"{max(0.0, now - m['time']):.1f}"))
    return rows


JOB_COLUMNS = ("JOB", "FRAMES", "E2E P50", "E2E P95")


def job_rows(latest: dict[str, dict]) -> list[tuple[str, ...]]:
    """One row per job the track stage published frames of in its last interval: its own end-to-end latency."""
    rows = []
    for m in latest.values():
        if m["stage"] == "track":
            for job, windows in m.get("job_latency_ms", {}).items():
                e2e = windows.get("end_to_end", {})
                rows.append((job, str(m["jobs"].get(job, 0)), _ms(e2e.get("p50")), _ms(e2e.get("p95"))))
    return rows


def render_table(latest: dict[str, dict], now: float) -> str:
    """The stages' table, and below it the jobs' when the track stage published frames in its last interval."""
    tables = [[COLUMNS, *table_rows(latest, now)]]
    jobs = job_rows(latest)
    if jobs:
        tables.append([JOB_COLUMNS, *jobs])
    return "\n\n".join(_aligned(rows) for rows in tables)


def _aligned(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) for row in rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def collect(sock: zmq.Socket, latest: dict[str, dict], seconds: float, until_any: bool = False) -> None:
    """Keep the newest snapshot of each stage process that arrives within ``seconds``
    (with ``until_any``: only until there is one)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not (until_any and latest):
        if sock.poll(int(left * 1000) + 1):
            message = sockets.receive(sock, "metrics")
            latest[f"{message['stage']}/{message['worker']}"] = message


def status(endpoint: str, once: bool, security: Curve | None = None, out=sys.stdout) -> int:
    """Print the stages' metrics as a table: once, or every second (in place on a terminal)."""
    ctx = zmq.Context()
    sock = sockets.connect(ctx, "metrics", endpoint, topics=(b"metrics/",), security=security)
    latest: dict[str, dict] = {}
    try:
        collect(sock, latest, NO_METRICS_TIMEOUT_S, until_any=True)
        if not latest:
            print(f"posebus: error: no metrics from {endpoint} within {NO_METRICS_TIMEOUT_S:.0f} s "
                  "(is a launcher running with this --metrics?)", file=sys.stderr)
            return 1
        # Every stage publishes once an interval: after one more interval each has been heard from.
        collect(sock, latest, max(m["interval"] for m in latest.values()) * 1.2)
        while True:
            table = render_table(latest, time.time())
            if once:
                print(table, file=out)
                return 0
            print(("\x1b[H\x1b[J" if out.isatty() else "") + table + ("" if out.isatty() else "\n"),
                  file=out, flush=True)
            collect(sock, latest, 1.0)
    except KeyboardInterrupt:
        return 0
    finally:
        ctx.destroy(linger=0)

