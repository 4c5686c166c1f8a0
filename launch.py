"""posebus launcher: runs the decode, detect and track stages as processes.

    python launch.py VIDEO [options]   run one job end to end, exit 0 when its job_end is published
    python launch.py serve [options]   keep running and take jobs on the control socket
    python launch.py status [--once]   a live table of every stage's metrics (--metrics ENDPOINT)
    python launch.py worker --worker-links tcp://HOST:PORT
                                       a detect worker on this host for a pipeline on HOST
    python launch.py models            report which model files were found, and how to get the rest
    python launch.py download-models   fetch the HMR 2.0 archive into the cache (resumable)

Internal links are ipc sockets in a private temporary folder; the results
socket (default tcp://127.0.0.1:5555) and the control socket (serve,
default tcp://127.0.0.1:5556) are for backends. With --worker-links
tcp://ADDR:PORT the links a detect worker uses are also bound on tcp there
(frames PORT, detections PORT+1, metrics PORT+2), CURVE required off
loopback, so workers on other hosts can join (see docs/security.md).
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import zmq

from bus import codec, messages, monitor, sockets
from bus.metrics import DEFAULT_INTERVAL_S
from outputs import OUTPUT_FILES
from stages import runtime

log = logging.getLogger("posebus.launch")
STOP_GRACE_S = 3.0
# The track stage writes --report/--app-json/--overlay files after a job ends (an overlay of a
# 1080p clip takes seconds a hundred frames) and leaves as soon as they are written.
OUTPUT_GRACE_S = 600.0
RESTART_BACKOFF_S = 0.5  # first restart delay of a dead worker, doubling up to the max
RESTART_BACKOFF_MAX_S = 30.0
MAX_IN_FLIGHT = 32  # frames decode keeps until the track stage has them (resent if a worker dies)
# A stage silent this long is hung: killed, then handled like one that died. A stage beats between
# detector batches, so the timeout must exceed the slowest batch: HMR 2.0's ViT-H takes ~2.7 s a person
# crop on a CPU (bench/RESULTS.md), a batch of 8 frames of a few people each takes minutes.
HEARTBEAT_TIMEOUT_S = 30.0
HEARTBEAT_TIMEOUT_HMR2_CPU_S = 600.0
LAUNCHER_STALL_S = 2.0  # the supervision loop runs every 200 ms; a longer gap means the launcher was stopped
PR_SET_PDEATHSIG = 1
WORKER_LINKS = ("frames", "detections", "stage_metrics")  # on --worker-links PORT, PORT+1, PORT+2


def _stage_preexec() -> None:
    """Run in each stage before exec.

    Ctrl-C reaches the whole process group; stages ignore it and stop on the
    launcher's SIGTERM instead, so shutdown is one orderly path. The kernel sends
    them SIGTERM if the launcher dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the launcher's own clean-up still stops the stages


@dataclass
class JobRecord:
    id: str
    source: str
    state: str = "queued"  # queued | running | done | failed (a cancelled job fails with "cancelled")
    frames: int = 0
    with_person: int = 0
    error: str | None = None


class Pipeline:
    """The stage processes and the launcher's ends of the jobs and status links."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.folder = Path(tempfile.mkdtemp(prefix="posebus-"))
        self.endpoints = {name: f"ipc://{self.folder / name}" for name in
                          ("jobs", "frames", "events", "detections", "status", "acks", "stage_metrics")}
        self.remote = worker_links(args.worker_links) if args.worker_links else {}
        self.ctx = zmq.Context()
        self.security = runtime.security_from_args(args)
        try:
            self.metrics_relay = monitor.MetricsRelay(
                self.ctx, self.endpoints["stage_metrics"], args.metrics, self.security, args.prometheus,
                remote_stage_endpoints=(self.remote["stage_metrics"],) if self.remote else ())
        except zmq.ZMQError:  # the metrics endpoint is taken: leave nothing behind
            self.ctx.destroy(linger=0)
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self.metrics_relay.start()
        self.jobs_out = sockets.bind(self.ctx, "jobs", self.endpoints["jobs"])
        self.status_in = sockets.bind(self.ctx, "status", self.endpoints["status"])
        self.records: dict[str, JobRecord] = {}
        self.bad = sockets.Counter("launcher")
        self.unsent: list[dict] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}  # name -> time.monotonic() its current process started
        # The watchdog's own last round; after a longer gap the launcher itself was stopped and
        # silences are counted again from when it came back.
        self.last_watch = self.listening_since = time.monotonic()
        self.hung: dict[str, float] = {}  # name -> seconds without a heartbeat, for a stage killed as hung
        self.restarts: dict[str, int] = {}
        self.restart_at: dict[str, float] = {}
        # To end a job whose decode stage died: the track stage takes job_end from decode's link.
        self.events_out = sockets.connect(self.ctx, "events", self.endpoints["events"])
        self._start_stages()

    def _stage_commands(self) -> dict[str, list[str]]:
        a, e = self.args, self.endpoints
        common = ["--log-level", a.log_level, "--metrics", e["stage_metrics"]]
        track = ["-m", "stages.track", "--detections", e["detections"], "--events", e["events"],
                 "--results", a.results, "--status", e["status"], "--wait-subscribers", str(a.wait_subscribers),
                 "--tracker", a.tracker, "--lookahead", str(a.lookahead), "--subjects", str(a.subjects),
                 "--n-init", str(a.n_init), "--max-age", str(a.max_age), "--stall-timeout", str(a.stall_timeout), *([] if a.smoothing else ["--no-smoothing"]),
                 "--history", a.history, "--acks", e["acks"], "--job-log", str(a.job_log), "--keep-jobs", str(a.keep_jobs),
                 *(["--out", str(a.out)] if a.out else []), *(["--phalp-pkl", str(a.phalp_pkl)] if a.phalp_pkl else []),
                 *(["--report", str(a.report)] if a.report else []), *(["--record", str(a.record)] if a.record else []),
                 *(["--app-json", str(a.app_json)] if a.app_json else []),
                 *(["--overlay", str(a.overlay)] if a.overlay else [])]
        decode = ["-m", "stages.decode", "--frames", e["frames"], "--events", e["events"], "--jobs", e["jobs"],
                  "--acks", e["acks"], "--max-in-flight", str(MAX_IN_FLIGHT), "--max-side", str(a.max_side),
                  # Workers all on this host: frames go through shared memory (bus.frame_ring).
                  *(["--jpeg", str(a.jpeg)] if a.jpeg else [] if self.remote else ["--shm"]),
                  *(["--realtime"] if a.realtime else []),
                  *(["--record", str(a.record)] if a.record else [])]
        detect = ["-m", "stages.detect", "--frames", e["frames"], "--detections", e["detections"], *detector_argv(a)]
        # The links are ipc in a 0700 folder; only results (track) and, with --worker-links, frames (decode)
        # and detections (track) are also on tcp, with CURVE. Local workers stay on ipc.
        if self.remote:
            track += ["--remote-detections", self.remote["detections"]]
            decode += ["--remote-frames", self.remote["frames"], *runtime.security_argv(self.security)]
        commands = {"track": track + runtime.security_argv(self.security) + common, "decode": decode + common}
        for i in range(a.workers):
            commands[f"detect-{i}"] = detect + common
        return {name: command + ["--worker-id", name] for name, command in commands.items()}

    def _start_stages(self) -> None:
        for name in self._stage_commands():
            self._start(name)

    def _start(self, name: str) -> None:
        """Start (or restart) one stage process."""
        if name in self.processes:
            self.metrics_relay.last_heard.pop(self.processes[name].pid, None)
        self.hung.pop(name, None)
        self.processes[name] = subprocess.Popen([sys.executable, *self._stage_commands()[name]],
                                                cwd=Path(__file__).resolve().parent, preexec_fn=_stage_preexec)
        self.started[name] = time.monotonic()

    def last_heard(self) -> dict[str, float]:
        """Stage name -> time.monotonic() of its current process's latest heartbeat (absent before the first)."""
        heard = self.metrics_relay.last_heard
        return {name: heard[p.pid] for name, p in self.processes.items() if p.pid in heard}

    def kill_hung(self) -> None:
        """SIGKILL (which a stopped process obeys too) every live stage silent for too long;
        ``supervise`` treats it as dead once it has exited (not waited for here: a process in
        uninterruptible sleep dies only when its system call returns)."""
        now = time.monotonic()
        if now - self.last_watch > LAUNCHER_STALL_S:
            self.listening_since = now
        self.last_watch = now
        if not self.args.heartbeat_timeout:
            return
        live = {name: start for name, start in self.started.items()
                if self.processes[name].poll() is None and name not in self.hung}
        for name, silent in monitor.overdue(live, self.last_heard(), now, self.args.heartbeat_timeout,
                                            listening_since=self.listening_since).items():
            process = self.processes[name]
            print(f"posebus: {name} (pid {process.pid}) sent no heartbeat for {silent:.0f} s; killing it",
                  file=sys.stderr)
            process.kill()
            self.hung[name] = silent

    def stopped_reason(self, name: str) -> str:
        """Why a dead stage stopped, for logs and job errors."""
        if name in self.hung:
            return f"no heartbeat for {self.hung[name]:.0f} s"
        return f"exit {self.processes[name].returncode}"

    def health(self) -> dict[str, dict]:
        """Stage name -> its process's pid, whether it runs, and seconds since its last heartbeat
        (None before the first)."""
        now, heard = time.monotonic(), self.last_heard()
        return {name: {"pid": p.pid, "alive": p.poll() is None,
                       "since_heartbeat_s": round(now - heard[name], 3) if name in heard else None}
                for name, p in self.processes.items()}

    def submit(self, source: str, job_id: str | None = None, options: dict | None = None) -> str:
        job_id = job_id or uuid.uuid4().hex[:12]
        if job_id in self.records:
            raise ValueError(f"job id {job_id} is already in use")
        self.records[job_id] = JobRecord(job_id, source)
        self.unsent.append(messages.job_request(job_id, source, {"detector": self.args.detector,
                                                                 **(options or {})}))
        self._send_pending()
        return job_id

    def _send_pending(self) -> None:
        while self.unsent:  # decode may not have connected yet
            try:
                sockets.send(self.jobs_out, self.unsent[0], zmq.NOBLOCK)
            except zmq.Again:
                return
            self.unsent.pop(0)

    def supervise(self) -> list[str]:
        """Kill hung stages; restart dead detect workers (with back-off); return the other stages that died.

        A worker's frames are not lost: the track stage asks decode for them again.
        """
        self.kill_hung()
        dead = []
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            if not name.startswith("detect"):
                dead.append(f"{name} ({self.stopped_reason(name)})")
            elif time.monotonic() >= self.restart_at.setdefault(name, 0.0):
                self.restarts[name] = self.restarts.get(name, 0) + 1
                delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (self.restarts[name] - 1))
                self.restart_at[name] = time.monotonic() + delay
                print(f"posebus: {name} stopped ({self.stopped_reason(name)}); restarted "
                      f"(restart {self.restarts[name]})", file=sys.stderr)
                self._start(name)
        return dead

    def cancel(self, job_id: str, error: str = "cancelled") -> None:
        """Stop a job: decode ends it (job_end with ``error``) whether it waits or runs."""
        if any(m["job"] == job_id for m in self.unsent):  # decode never had it
            self.unsent = [m for m in self.unsent if m["job"] != job_id]
            self.records[job_id].state, self.records[job_id].error = "failed", error
            return
        self.unsent.append(messages.cancel(job_id, error))
        self._send_pending()

    def restart_dead(self) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                self._start(name)

    def fail_running_job(self, reason: str) -> None:
        """A stage the job needs died: end the job with an error.

        With the track stage alive (decode died), the launcher ends the job there. Without it, decode ends
        the job and moves on; a restarted track stage publishes that job_end alone (it never had the job_start).
        """
        record = next((r for r in self.records.values() if r.state in ("queued", "running")), None)
        if record is None:
            return
        if self.processes["track"].poll() is None:
            sockets.send(self.events_out, messages.job_end(record.id, 0, reason))
        else:
            self.cancel(record.id, reason)
        record.state, record.error = "failed", reason

    def poll(self, timeout_ms: int) -> list[dict]:
        """Status messages that arrived within ``timeout_ms``, applied to the job records."""
        self._send_pending()
        arrived = []
        while self.status_in.poll(timeout_ms):
            timeout_ms = 0
            try:
                message = sockets.receive(self.status_in, ("progress", "job_end"))
            except ValueError as exc:
                self.bad.drop(exc)
                continue
            record = self.records.get(message["job"])
            if record is not None:
                record.frames = message["frames"]
                if message["type"] == "progress":
                    record.state, record.with_person = "running", message["with_person"]
                else:
                    record.state, record.error = ("done", None) if message["status"] == "ok" else (
                        "failed", message["error"])
            arrived.append(message)
        return arrived

    def stop(self) -> None:
        """Stop every stage (SIGTERM, then SIGKILL after a grace period) and remove the ipc folder.

        The track stage's grace covers the output files it is still writing, if any were asked for."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        started = time.monotonic()
        writes_outputs = any(getattr(self.args, name, None) for name in OUTPUT_FILES)
        for name, process in self.processes.items():
            grace = OUTPUT_GRACE_S if name == "track" and writes_outputs else STOP_GRACE_S
            try:
                process.wait(max(0.0, started + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.metrics_relay.stop()
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.folder, ignore_errors=True)


def detector_argv(args: argparse.Namespace) -> list[str]:
    """The detector flags of a detect worker, as the launcher was given them."""
    return ["--detector", args.detector, "--blazepose-mode", args.blazepose_mode, "--device", args.device,
            "--boxes", args.boxes, "--crops-per-forward", str(args.crops_per_forward),
            *(["--checkpoint", str(args.checkpoint)] if args.checkpoint else []),
            *(["--hmr2-config", args.hmr2_config] if args.hmr2_config else []), *(["--mesh"] if args.mesh else [])]


def worker_links(endpoint: str) -> dict[str, str]:
    """The tcp endpoints of a detect worker's links for ``--worker-links tcp://HOST:PORT``:
    frames on PORT, detections on PORT+1, the worker's metrics on PORT+2."""
    match = re.fullmatch(r"tcp://(.+):(\d+)", endpoint)
    if match is None:
        raise ValueError(f"--worker-links takes tcp://HOST:PORT, not {endpoint}")
    return {name: f"tcp://{match.group(1)}:{int(match.group(2)) + offset}" for offset, name in enumerate(WORKER_LINKS)}


def check_worker_links(args: argparse.Namespace) -> str | None:
    """Why ``--worker-links`` cannot be used as given, or None: frames carry the video and
    detections feed the results, so off loopback both need CURVE (encrypted, authorized workers only)."""
    try:
        worker_links(args.worker_links)
    except ValueError as exc:
        return str(exc)
    if not sockets.is_loopback(args.worker_links) and args.curve_name is None:
        return (f"--worker-links {args.worker_links} reaches other machines: turn CURVE on with --curve-name "
                "(see docs/security.md)")
    if args.source == "worker" and args.curve_name is not None and args.curve_server is None:
        return "a worker with CURVE needs the pipeline's public key name (--curve-server)"
    return None


def worker(args: argparse.Namespace) -> int:
    """Run a detect worker here for the pipeline whose --worker-links is ``args.worker_links``."""
    from stages import detect

    links = worker_links(args.worker_links)
    argv = ["--frames", links["frames"], "--detections", links["detections"], "--metrics", links["stage_metrics"],
            *detector_argv(args), *runtime.security_argv(runtime.security_from_args(args)),
            "--log-level", args.log_level]
    runtime.run(lambda: detect.main(argv))
    return 0


class ProgressBar:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, total: int | None):
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()

    def update(self, record: JobRecord) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        total = self.total or 0
        filled = int(30 * record.frames / total) if total else 0
        bar = f"[{'#' * filled}{'.' * (30 - filled)}] " if total else ""
        sys.stderr.write(f"\r{bar}{record.frames}/{total or '?'} frames  {record.frames / elapsed:5.1f} fps  "
                         f"person in {record.with_person}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_one(args: argparse.Namespace) -> int:
    from video.sources import SourceError, open_source

    try:  # only for the progress bar: decode reports a bad source as the job's error
        total = open_source(args.source).info.frame_count
    except SourceError:
        total = None
    pipeline = Pipeline(args)
    bar = ProgressBar(total)
    try:
        job = pipeline.submit(args.source, args.job)
        record = pipeline.records[job]
        while record.state not in ("done", "failed"):
            pipeline.poll(200)
            bar.update(record)
            dead = pipeline.supervise()
            if dead:
                pipeline.fail_running_job(f"stage stopped: {', '.join(dead)}")
        bar.close()
        if record.state == "failed":
            print(f"posebus: error: job {job}: {record.error}", file=sys.stderr)
            return 1
        print(f"posebus: job {job}: {record.frames} frames, person in {record.with_person}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        bar.close()
        print("posebus: interrupted", file=sys.stderr)
        return 130
    finally:
        pipeline.stop()


def handle_request(pipeline: Pipeline, request: dict) -> dict:
    """Answer one control request (already validated)."""
    command = request["cmd"]
    if command == "submit":
        from video.sources import SourceError, open_source

        source = request["source"]
        if "://" not in source and not source.isdigit():  # streams and cameras would block the socket
            try:
                open_source(source)
            except SourceError as exc:
                return {"ok": False, "error": str(exc)}
        return {"ok": True, "job": pipeline.submit(request["source"], request.get("job"), request.get("options"))}
    if command == "status":
        record = pipeline.records.get(request["job"])
        if record is None:
            return {"ok": False, "error": f"no job {request['job']}"}
        return {"ok": True, **vars(record)}
    if command == "cancel":
        record = pipeline.records.get(request["job"])
        if record is None or record.state not in ("queued", "running"):
            return {"ok": False, "error": f"no queued or running job {request['job']}"}
        pipeline.cancel(record.id)
        return {"ok": True, "job": record.id}
    if command == "list":
        return {"ok": True, "jobs": [vars(r) for r in pipeline.records.values()]}
    health = pipeline.health()
    return {"ok": True, "stages": {name: stage["alive"] for name, stage in health.items()}, "processes": health,
            "heartbeat_timeout_s": pipeline.args.heartbeat_timeout, "restarts": pipeline.restarts,
            "detector": pipeline.args.detector}


def serve(args: argparse.Namespace) -> int:
    pipeline = Pipeline(args)
    control = sockets.bind(pipeline.ctx, "control", args.control, security=pipeline.security)
    print(f"posebus: serving; control {args.control}, results {args.results}, metrics {args.metrics}",
          file=sys.stderr)
    try:
        while True:
            pipeline.poll(0)
            dead = pipeline.supervise()
            if dead:  # fail the job in hand, bring the stage back, take the next job
                print(f"posebus: error: stage stopped: {', '.join(dead)}; restarting it", file=sys.stderr)
                pipeline.fail_running_job(f"stage stopped: {', '.join(dead)}")
                pipeline.restart_dead()
            if not control.poll(100):
                continue
            try:
                request = messages.validate_request(codec.decode(control.recv_multipart(copy=False)))
                pipeline.poll(0)  # answer with the latest job states
                reply = handle_request(pipeline, request)
            except ValueError as exc:
                reply = {"ok": False, "error": str(exc)}
            control.send_multipart(codec.encode(reply))
    except KeyboardInterrupt:
        return 130
    finally:
        pipeline.stop()


def models(args: argparse.Namespace) -> int:
    """Report the model files: what ships, what was found, what to get for the rest."""
    from detectors.hmr2.weights import find_checkpoint, missing_checkpoint_report

    print("blazepose: bundled inside mediapipe==0.10.14 (pose_landmark_full), nothing to get")
    found, searched = find_checkpoint(args.checkpoint, args.cache_dir)
    if found:
        print(f"hmr2: checkpoint found at {found}")
        return 0
    print("hmr2: " + missing_checkpoint_report(searched, args.url))
    return 1


def download_models(args: argparse.Namespace) -> int:
    from detectors.hmr2.weights import candidate_cache_dirs, fetch_checkpoint

    cache = Path(args.cache_dir) if args.cache_dir else candidate_cache_dirs()[0]
    try:
        print(f"hmr2: checkpoint ready at {fetch_checkpoint(cache, args.url)}")
        return 0
    except OSError as exc:
        print(f"posebus: error: download failed: {exc} (run again to resume)", file=sys.stderr)
        return 1


def resolve_checkpoint(args: argparse.Namespace) -> str | None:
    """Before any stage starts: the HMR 2.0 checkpoint path, or None after printing what is missing."""
    from detectors.hmr2.weights import find_checkpoint, missing_checkpoint_report

    found, searched = find_checkpoint(args.checkpoint, args.cache_dir)
    if found is None:
        print("posebus: error: " + missing_checkpoint_report(searched, args.url), file=sys.stderr)
    return str(found) if found else None


def beside(results: str, offset: int, link: str) -> str:
    """An endpoint paired with a results endpoint: same host, port + offset (history 5562, metrics 5563),
    so pipelines started with different results ports never collide."""
    match = re.fullmatch(r"tcp://(.+):(\d+)", results)
    return f"tcp://{match.group(1)}:{int(match.group(2)) + offset}" if match else sockets.LINKS[link].default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from detectors.hmr2.weights import DEFAULT_URL
    from stages.detect import add_detector_flags
    from stages.track import add_output_flags, add_tracker_flags
    from video.sources import DEFAULT_MAX_SIDE

    parser = argparse.ArgumentParser(prog="python launch.py", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("source", help="video file, image folder, camera index, stream URL; or serve, status, "
                                       "worker, models, download-models")
    parser.add_argument("--workers", type=int, default=1, help="detect worker processes (default 1)")
    add_detector_flags(parser)
    add_tracker_flags(parser)
    add_output_flags(parser)
    parser.add_argument("--cache-dir", help="4D-Humans cache folder to look in for the HMR 2.0 checkpoint")
    parser.add_argument("--url", default=DEFAULT_URL, help="where download-models fetches the HMR 2.0 archive")
    parser.add_argument("--phalp-pkl", type=Path, metavar="PATH",
                        help="also write PHALP-format results: PATH if it ends in .pkl, else PATH/<job>.pkl")
    parser.add_argument("--results", default=sockets.LINKS["results"].default, metavar="ENDPOINT")
    parser.add_argument("--control", default=sockets.LINKS["control"].default, metavar="ENDPOINT")
    parser.add_argument("--history", metavar="ENDPOINT",
                        help="where backends ask for a job's results from any frame (replay); "
                             "default: the results endpoint's port + 7 (tcp://127.0.0.1:5562)")
    parser.add_argument("--metrics", metavar="ENDPOINT",
                        help="where the stages' metrics are published (status reads them here); "
                             "default: the results endpoint's port + 8 (tcp://127.0.0.1:5563)")
    parser.add_argument("--prometheus", type=int, metavar="PORT",
                        help="serve the metrics to Prometheus on 127.0.0.1:PORT (needs prometheus-client)")
    parser.add_argument("--once", action="store_true", help="status: print one table and exit")
    parser.add_argument("--out", type=Path, metavar="DIR", help="also write results to DIR/<job>.jsonl")
    parser.add_argument("--record", type=Path, metavar="DIR",
                        help="save every bus stream of each job to DIR/<job>/ (replay a stage alone on it)")
    parser.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                        help="hold publishing until N subscribers have subscribed")
    parser.add_argument("--worker-links", metavar="tcp://ADDR:PORT",
                        help="also bind the detect workers' links here (frames PORT, detections PORT+1, metrics "
                             "PORT+2) for workers on other hosts, CURVE required off loopback; "
                             "worker: the pipeline's --worker-links to join")
    parser.add_argument("--jpeg", type=int, metavar="QUALITY", help="send frames as JPEG (remote workers)")
    parser.add_argument("--realtime", action="store_true", help="decode at the source's frame rate, like a camera")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, metavar="PX",
                        help="downscale frames whose longer side exceeds PX before detection; results stay in the "
                             f"source's pixels (default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--job", help="job id (default: random)")
    parser.add_argument("--heartbeat-timeout", type=float, metavar="S",
                        help="kill a stage that sends no heartbeat for S seconds, then handle it like one that "
                             f"died (default {HEARTBEAT_TIMEOUT_S:g}; {HEARTBEAT_TIMEOUT_HMR2_CPU_S:g} for hmr2 on "
                             "a CPU, whose batches are slow; 0: never)")
    runtime.add_security_flags(parser)
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if args.heartbeat_timeout is None:
        args.heartbeat_timeout = default_heartbeat_timeout(args.detector, args.device)
    elif args.heartbeat_timeout != 0 and args.heartbeat_timeout <= DEFAULT_INTERVAL_S:
        parser.error(f"--heartbeat-timeout must be more than the {DEFAULT_INTERVAL_S:g} s between heartbeats (0: off)")
    return args


def default_heartbeat_timeout(detector: str, device: str) -> float:
    return HEARTBEAT_TIMEOUT_HMR2_CPU_S if detector == "hmr2" and device == "cpu" else HEARTBEAT_TIMEOUT_S


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.history = args.history or beside(args.results, 7, "history")
    args.metrics = args.metrics or beside(args.results, 8, "metrics")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s launch %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.source == "models":
        return models(args)
    if args.source == "download-models":
        return download_models(args)
    if args.source == "status":
        return monitor.status(args.metrics, args.once, runtime.security_from_args(args))
    if args.source == "worker" and not args.worker_links:
        print("posebus: error: worker needs the pipeline's --worker-links tcp://HOST:PORT", file=sys.stderr)
        return 1
    problem = check_worker_links(args) if args.worker_links else None
    if problem:
        print(f"posebus: error: {problem}", file=sys.stderr)
        return 1
    if args.detector == "hmr2":
        args.checkpoint = resolve_checkpoint(args)
        if args.checkpoint is None:
            return 1
    if args.source == "worker":
        return worker(args)
    try:
        return serve(args) if args.source == "serve" else run_one(args)
    except zmq.ZMQError as exc:  # e.g. an endpoint already in use
        print(f"posebus: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
