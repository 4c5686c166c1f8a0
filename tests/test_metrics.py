"""Stage metrics: the bookkeeping, the stages publishing it, `launch.py status` and Prometheus."""
import logging
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import zmq

from bench.spooled import Spooled
from bus import messages, sockets
from bus.logline import logfmt
from bus.metrics import JOBS_REPORTED, StageMetrics
from launcher.monitor import render_table

from conftest import ROOT, VIDEO, free_port


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def frame(job, index, **timestamps):
    message = messages.frame(job, index, index * 33.3, [])
    message["timestamps"] = timestamps
    return message


def test_latency_percentiles_cover_the_interval_then_start_afresh():
    clock = FakeClock()
    metrics = StageMetrics("track", "track", clock=clock)
    rng = np.random.default_rng(0)
    e2e_ms = rng.uniform(50, 400, 200)
    for i, ms in enumerate(e2e_ms):
        metrics.sent(frame("j", i, decoded=10.0, detected=10.02, published=10.0 + ms / 1000))
    clock.now += 1.0
    latency = metrics.snapshot()["latency_ms"]
    assert latency["end_to_end"]["samples"] == 200
    assert latency["end_to_end"]["p50"] == pytest.approx(np.percentile(e2e_ms, 50), abs=1e-6)
    assert latency["end_to_end"]["p95"] == pytest.approx(np.percentile(e2e_ms, 95), abs=1e-6)
    assert latency["stage"]["p50"] == pytest.approx(np.percentile(e2e_ms - 20, 50), abs=1e-6)
    clock.now += 1.0
    assert metrics.snapshot()["latency_ms"]["end_to_end"] == {"p50": None, "p95": None, "samples": 0}


def test_each_job_has_its_own_latency_beside_the_stage_s():
    clock = FakeClock()
    metrics = StageMetrics("track", "track", clock=clock)
    for i in range(20):  # a live stream published at once, a file job beside it waiting behind the workers
        metrics.sent(frame("live", i, decoded=10.0, detected=10.01, published=10.05))
        metrics.sent(frame("file", i, decoded=10.0, detected=10.5, published=11.0))
    clock.now += 1.0
    snapshot = metrics.snapshot()
    messages.validate(snapshot)
    per_job = snapshot["job_latency_ms"]
    assert per_job["live"]["end_to_end"]["p95"] == pytest.approx(50.0)
    assert per_job["file"]["end_to_end"]["p50"] == pytest.approx(1000.0)
    assert per_job["live"]["end_to_end"]["samples"] == per_job["file"]["end_to_end"]["samples"] == 20
    assert snapshot["latency_ms"]["end_to_end"]["samples"] == 40
    metrics.sent(frame("file", 20, decoded=10.0, detected=10.5, published=11.0))
    clock.now += 1.0
    assert set(metrics.snapshot()["job_latency_ms"]) == {"file"}  # the live job sent nothing this interval
    clock.now += 1.0
    assert "job_latency_ms" not in metrics.snapshot()


def test_job_latencies_are_kept_for_the_jobs_reported_only():
    metrics = StageMetrics("track", "track", clock=FakeClock())
    for job in range(JOBS_REPORTED + 5):
        metrics.sent(frame(f"job-{job}", 0, decoded=10.0, detected=10.0, published=10.1))
    assert set(metrics.job_latencies) == set(metrics.jobs) and len(metrics.jobs) == JOBS_REPORTED


def test_fps_is_frames_over_the_time_since_the_last_snapshot():
    clock = FakeClock()
    metrics = StageMetrics("detect", "detect-0", interval=1.0, clock=clock)
    assert not metrics.due() and metrics.timeout_ms() == 1000
    for i in range(45):
        metrics.sent(messages.detections("j", i, 0.0, []))
    metrics.sent(messages.job_end("j", 45))  # sent on, but not a frame
    clock.now += 1.5
    assert metrics.due() and metrics.timeout_ms() == 0
    snapshot = metrics.snapshot()
    assert snapshot["fps"] == pytest.approx(30.0)
    assert (snapshot["frames"], snapshot["messages_out"], snapshot["interval"]) == (45, 46, pytest.approx(1.5))
    clock.now += 0.5
    assert metrics.snapshot()["fps"] == 0.0 and not metrics.due()


def test_snapshot_is_a_valid_metrics_message_with_drops_errors_and_recent_jobs():
    bad = sockets.Counter("detect")
    metrics = StageMetrics("detect", "detect-0", drops=bad)
    logger = logging.getLogger("posebus.test_metrics")
    metrics.count_errors_of(logger)
    try:
        bad.drop(ValueError("garbage"))
        logger.error("one error")
        logger.warning("not an error")
    finally:
        logger.removeHandler(metrics.errors)
    for job in range(JOBS_REPORTED + 2):
        metrics.sent(messages.detections(f"job{job}", 0, 0.0, []))
    metrics.sent(messages.detections("job2", 1, 0.0, []))  # the oldest job busy again is recent again
    metrics.sent(messages.detections("new", 0, 0.0, []))  # so this one pushes out job3 instead
    snapshot = messages.validate(metrics.snapshot(), ("metrics",))
    assert (snapshot["drops"], snapshot["errors"]) == (1, 1)
    assert len(snapshot["jobs"]) == JOBS_REPORTED and snapshot["jobs"]["job2"] == 2
    assert not {"job0", "job1", "job3"} & set(snapshot["jobs"])
    assert messages.topic(snapshot) == b"metrics/detect/detect-0"
    assert snapshot["gpu_memory"] is None  # no CUDA in this process


def test_log_events_are_key_value_pairs():
    assert logfmt(event="duplicate_dropped", job="abc", frame=12) == "event=duplicate_dropped job=abc frame=12"
    assert logfmt(error=ValueError("no such file"), fps=29.97) == 'error="no such file" fps=29.970'


def test_status_table_has_a_row_per_stage_in_pipeline_order():
    now = time.time()
    latest = {}
    for stage, worker in (("track", "track"), ("detect", "detect-1"), ("decode", "decode"), ("detect", "detect-0")):
        metrics = StageMetrics(stage, worker, wall=lambda: now)
        metrics.sent(frame("j", 0, decoded=now - 0.3, detected=now - 0.1, published=now))
        latest[worker] = metrics.snapshot()
    stages, jobs = (part.splitlines() for part in render_table(latest, now).split("\n\n"))
    assert [line.split()[0] for line in stages] == ["STAGE", "decode", "detect-0", "detect-1", "track"]
    track = stages[-1].split()
    assert track[5:9] == ["100.0", "100.0", "300.0", "300.0"]  # stage and end-to-end p50, p95 in ms
    assert [line.split() for line in jobs] == [["JOB", "FRAMES", "E2E", "P50", "E2E", "P95"],
                                                ["j", "1", "300.0", "300.0"]]  # the job's own latency


def wait_for_metrics(sub, count, timeout_s=10.0):
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < count and sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        got.append(sockets.receive(sub, "stage_metrics"))
    return got


def test_idle_stages_still_publish_every_interval(tmp_path):
    """No job at all: the decode and track loops wake up on their poll timeouts to publish."""
    ctx = zmq.Context()
    ipc = {name: f"ipc://{tmp_path / name}" for name in ("metrics", "jobs", "frames", "events", "detections",
                                                          "results", "history")}
    inbox = sockets.bind(ctx, "stage_metrics", ipc["metrics"])
    common = ["--metrics-link", ipc["metrics"], "--metrics-interval", "0.3"]
    stages = [subprocess.Popen([sys.executable, "-m", *command, *common], cwd=ROOT) for command in (
        ["stages.decode", "--jobs", ipc["jobs"], "--frames", ipc["frames"], "--events", ipc["events"],
         "--worker-id", "decode"],
        ["stages.track", "--detections", ipc["detections"], "--events", ipc["events"], "--results", ipc["results"],
         "--history", ipc["history"], "--job-log", str(tmp_path / "logs"), "--worker-id", "track"])]
    try:
        got = wait_for_metrics(inbox, 12)
    finally:
        for stage in stages:
            stage.terminate()
            stage.wait(10)
        ctx.destroy(linger=0)
    by_worker = {w: [m for m in got if m["worker"] == w] for w in ("decode", "track")}
    assert all(len(snapshots) >= 3 for snapshots in by_worker.values()), {w: len(s) for w, s in by_worker.items()}
    assert all(m["fps"] == 0 and m["frames"] == 0 for m in got)


class Subscriber(threading.Thread):
    """Keeps every message of an endpoint with the wall-clock time this process received it."""

    def __init__(self, ctx, link, endpoint, topics=(b"",), until_type=None):
        super().__init__(daemon=True)
        self.sock = sockets.connect(ctx, link, endpoint, topics=topics)
        self.link = link
        self.received: list[tuple[float, dict]] = []
        self.until_type = until_type
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            if self.sock.poll(100):
                message = sockets.receive(self.sock, self.link)
                self.received.append((time.time(), message))
                if message["type"] == self.until_type:
                    return

    def frames(self):
        return [(t, m) for t, m in self.received if m["type"] == "frame"]


def status_rows(metrics_endpoint):
    table = subprocess.run([sys.executable, "launch.py", "status", "--once", "--metrics", metrics_endpoint],
                           cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.split("\n\n")[0].splitlines()  # the stages' table, not the jobs' below it
    return {row.split()[0]: dict(zip(header.split("  "), row.split())) for row in rows}, header


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_a_realtime_job_shows_every_stage_and_measures_end_to_end_latency_right(tmp_path):
    """End to end latency as the track stage reports it vs as a backend sees it.

    The metric is ``published - decoded`` of the frames the track stage sent in
    each interval. The external figure is, for the same frames (those whose
    ``published`` stamp falls in that interval), this test process's receive
    time minus ``decoded``: it is measured on the other side of the socket, so it
    also counts the transport and the subscriber's wake-up, and agrees only if
    the stage's bookkeeping (stamps, windows, percentiles) is right. Both use
    the one wall clock of this machine.
    """
    results, metrics_endpoint, history = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    prometheus_port = free_port()
    has_prometheus = _has_prometheus_client()
    ctx = zmq.Context()
    backend = Subscriber(ctx, "results", results, until_type="job_end")
    monitor = Subscriber(ctx, "metrics", metrics_endpoint, topics=(b"metrics/track/",))
    backend.start()
    monitor.start()
    launcher = Spooled(
        [sys.executable, "launch.py", VIDEO, "--realtime", "--results", results, "--history", history,
         "--metrics", metrics_endpoint, "--wait-subscribers", "1", "--job-log", tmp_path / "logs",
         *(["--prometheus", str(prometheus_port)] if has_prometheus else [])],
        cwd=ROOT, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(backend.frames()) < 20 and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.1)
        rows, header = status_rows(metrics_endpoint)
        assert {"decode", "detect-0", "track"} <= set(rows), header + "\n" + "\n".join(rows)
        assert all(float(rows[stage]["FPS"]) > 0 for stage in ("decode", "detect-0", "track")), rows
        if has_prometheus:
            scraped = fetch(f"http://127.0.0.1:{prometheus_port}/metrics")
            assert 'posebus_fps{stage="track",worker="track"}' in scraped
            assert 'posebus_latency_ms{latency="end_to_end",quantile="0.5",stage="track",worker="track"}' in scraped
            assert 'posebus_job_latency_ms{job="' in scraped
        _, stderr = launcher.communicate(timeout=120)
        assert launcher.returncode == 0, stderr
    finally:
        if launcher.poll() is None:
            launcher.kill()
        backend.join(10)
        monitor.stop.set()
        monitor.join(10)
        ctx.destroy(linger=0)

    frames = backend.frames()
    assert len(frames) == 180
    windows = [m for _, m in monitor.received if m["latency_ms"]["end_to_end"]["samples"] >= 10]
    assert len(windows) >= 3
    for snapshot in windows:
        start, end = snapshot["time"] - snapshot["interval"], snapshot["time"]
        seen_ms = [(t - m["timestamps"]["decoded"]) * 1000 for t, m in frames
                   if start < m["timestamps"]["published"] <= end]
        reported = snapshot["latency_ms"]["end_to_end"]
        assert abs(len(seen_ms) - reported["samples"]) <= 2
        assert np.median(seen_ms) == pytest.approx(reported["p50"], rel=0.10)
        (job_windows,) = snapshot["job_latency_ms"].values()  # one job: its latency is the stage's
        assert job_windows["end_to_end"] == reported


def _has_prometheus_client():
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True
