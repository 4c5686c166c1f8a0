"""Serve the stages' metrics to Prometheus (``launch.py ... --prometheus PORT``).

Needs ``prometheus-client`` (``pip install prometheus-client``; in the dev
extra). The exporter keeps each stage process's latest ``metrics`` message and
turns it into metric families at scrape time: the messages already carry
running totals, which Prometheus counters could only re-add, not set.
"""
from __future__ import annotations

import threading

try:
    from prometheus_client import start_http_server
    from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import CollectorRegistry
except ImportError as exc:  # only --prometheus needs it
    raise SystemExit("posebus: error: --prometheus needs prometheus-client "
                     "(pip install prometheus-client)") from exc

LABELS = ["stage", "worker"]
COUNTERS = {  # message field -> (metric name, help); exposed with the _total suffix
    "messages_in": ("posebus_messages_in", "Messages the stage took in"),
    "messages_out": ("posebus_messages_out", "Messages the stage sent on"),
    "frames": ("posebus_frames", "Frames the stage finished"),
    "drops": ("posebus_drops", "Malformed messages the stage dropped"),
    "retries": ("posebus_retries", "Sends the stage retried"),
    "errors": ("posebus_errors", "Errors the stage logged"),
}
GAUGES = {
    "fps": ("posebus_fps", "Frames per second over the last interval"),
    "queue": ("posebus_queue", "Work waiting in the stage"),
    "gpu_memory": ("posebus_gpu_memory_bytes", "Peak CUDA memory torch allocated"),
}


class PrometheusExporter:
    """An HTTP endpoint on 127.0.0.1:``port`` with one sample per stage process and field."""

    def __init__(self, port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY):
        self._latest: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()  # updated by the relay thread, read by the HTTP server's
        registry.register(self)
        start_http_server(port, addr=host, registry=registry)

    def update(self, message: dict) -> None:
        with self._lock:
            self._latest[(message["stage"], message["worker"])] = message

    def collect(self):
        with self._lock:
            latest = list(self._latest.values())
        for field, (name, text) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=LABELS)
            for m in latest:
                family.add_metric([m["stage"], m["worker"]], m[field])
            yield family
        for field, (name, text) in GAUGES.items():
            family = GaugeMetricFamily(name, text, labels=LABELS)
            for m in latest:
                if m.get(field) is not None:
                    family.add_metric([m["stage"], m["worker"]], m[field])
            yield family
        yield self._latencies(latest)
        yield self._job_latencies(latest)

    @staticmethod
    def _latencies(latest: list[dict]) -> GaugeMetricFamily:
        family = GaugeMetricFamily("posebus_latency_ms", "Frame latency percentiles over the last interval",
                                   labels=[*LABELS, "latency", "quantile"])
        for m in latest:
            _add_windows(family, [m["stage"], m["worker"]], m["latency_ms"])
        return family

    @staticmethod
    def _job_latencies(latest: list[dict]) -> GaugeMetricFamily:
        family = GaugeMetricFamily("posebus_job_latency_ms", "One job's frame latency percentiles over the last "
                                   "interval", labels=[*LABELS, "job", "latency", "quantile"])
        for m in latest:
            for job, windows in m.get("job_latency_ms", {}).items():
                _add_windows(family, [m["stage"], m["worker"], job], windows)
        return family


def _add_windows(family: GaugeMetricFamily, labels: list[str], windows: dict) -> None:
    """One sample per latency window and quantile that had samples."""
    for latency, window in windows.items():
        for quantile, key in (("0.5", "p50"), ("0.95", "p95")):
            if window[key] is not None:
                family.add_metric([*labels, latency, quantile], window[key])
