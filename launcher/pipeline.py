"""The pipeline: the decode, detect and track stage processes, supervised, and the launcher's job records.

Jobs run side by side, up to ``--max-jobs`` at once (decode gives each a lane, the workers are
shared fairly: stages.decode.FairFrames); the launcher keeps the rest waiting in submission
order, each with its place in the queue, and hands the next to decode when a running one ends.

Internal links are ipc sockets in a private temporary folder. A detect worker that dies
is restarted with back-off (the track stage asks decode again for the frames it held);
a stage silent past ``--heartbeat-timeout`` is killed and handled like one that died;
the caller decides what a dead decode or track stage means for the job in hand.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import zmq

import detectors
import options
import outputs
from bus import messages, sockets
from launcher import monitor
from launcher.workers import detector_argv, worker_links
from options.groups import DECODE, DETECT, DETECTOR, TRACK, TRACKER
from stages import runtime

HOST = socket.gethostname()  # as the stages name it in their metrics
REMOTE_WORKER_SILENCE_S = 30.0  # a remote worker silent this long is no longer counted (with --heartbeat-timeout 0)

ROOT = Path(__file__).resolve().parents[1]  # where ``python -m stages.*`` finds the stages
STOP_GRACE_S = 3.0
# The track stage writes --report/--app-json/--overlay files after a job ends (an overlay of a
# 1080p clip takes seconds a hundred frames) and leaves as soon as they are written.
OUTPUT_GRACE_S = 600.0
RESTART_BACKOFF_S = 0.5  # first restart delay of a dead worker, doubling up to the max
RESTART_BACKOFF_MAX_S = 30.0
MAX_IN_FLIGHT = 32  # frames decode keeps until the track stage has them (resent if a worker dies)
LAUNCHER_STALL_S = 2.0  # the supervision loop runs every 200 ms; a longer gap means the launcher was stopped
PR_SET_PDEATHSIG = 1


def _stage_environment() -> dict[str, str]:
    """Stages run in the launcher's folder, so that relative paths (a video, --out DIR) mean what they meant
    to whoever started it; they find posebus on PYTHONPATH, not in that folder (PYTHONSAFEPATH, Python 3.11+)."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONSAFEPATH": "1"}


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
    # queued (waiting for a free lane) | running (handed to decode) | done | failed (a cancelled job
    # fails with "cancelled")
    state: str = "queued"
    frames: int = 0
    with_person: int = 0
    detection_failed: int = 0  # frames the detector failed on (published, people filled by the tracker)
    error: str | None = None
    queue_position: int | None = None  # while queued: 1 for the next job to run
    options: dict = field(default_factory=dict)  # the job's own options, as submitted


class Pipeline:
    """The stage processes and the launcher's ends of the jobs and status links."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        # A pool of --workers detect workers per detector kind (launch.py --detectors), the default kind first:
        # decode sends each job's frames to its kind's pool only, on that pool's own frames link.
        self.kinds = tuple(dict.fromkeys((args.detector, *(getattr(args, "detectors", None) or ()))))
        self.folder = Path(tempfile.mkdtemp(prefix="posebus-"))
        self.endpoints = {name: f"ipc://{self.folder / name}" for name in
                          ("jobs", "frames", "events", "detections", "status", "acks", "stage_metrics",
                           *(f"frames-{kind}" for kind in self.kinds[1:]))}
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
        args.metrics = sockets.bound_endpoint(self.metrics_relay.outbox)  # the port picked for a one-off run's *
        self.metrics_relay.start()
        self.jobs_out = sockets.bind(self.ctx, "jobs", self.endpoints["jobs"])
        self.status_in = sockets.bind(self.ctx, "status", self.endpoints["status"])
        self.records: dict[str, JobRecord] = {}
        self.bad = sockets.Counter("launcher")
        self.queued: list[dict] = []  # job requests waiting for a free lane, in submission order
        self.unsent: list[dict] = []  # job requests and cancellations decode has not taken yet
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
        common = ["--log-level", a.log_level, "--metrics-link", e["stage_metrics"]]
        track = ["-m", "stages.track", "--detections", e["detections"], "--events", e["events"],
                 "--results", a.results, "--status", e["status"], "--history", a.history, "--acks", e["acks"],
                 *options.argv("track", a, TRACK, TRACKER, outputs.table(), detectors.table())]
        decode = ["-m", "stages.decode", "--frames", e["frames"], "--events", e["events"], "--jobs", e["jobs"],
                  "--acks", e["acks"], "--max-in-flight", str(MAX_IN_FLIGHT),
                  *options.argv("decode", a, DECODE, outputs.table()),
                  # By then a worker that went silent holding the frames has been replaced.
                  *(["--resend-after", str(a.heartbeat_timeout)] if a.heartbeat_timeout else []),
                  # Workers all on this host: frames go through shared memory (bus.frame_ring).
                  *([] if a.jpeg or self.remote else ["--shm"])]
        decode += [word for kind in self.kinds[1:] for word in ("--detector-frames", f"{kind}={e[f'frames-{kind}']}")]
        # The links are ipc in a 0700 folder; only results (track) and, with --worker-links, frames (decode)
        # and detections (track) are also on tcp, with CURVE. Local workers stay on ipc.
        if self.remote:
            track += ["--remote-detections", self.remote["detections"]]
            decode += ["--remote-frames", self.remote["frames"], *runtime.security_argv(self.security)]
        commands = {"track": track + runtime.security_argv(self.security) + common, "decode": decode + common}
        for name, kind in self.workers().items():
            frames = e["frames" if kind == a.detector else f"frames-{kind}"]
            commands[name] = ["-m", "stages.detect", "--frames", frames, "--detections", e["detections"],
                              *detector_argv(a, kind)] + common
        return {name: command + ["--worker-id", name] for name, command in commands.items()}

    def workers(self) -> dict[str, str]:
        """Detect worker name -> its detector kind: ``detect-<i>`` with one kind, ``detect-<kind>-<i>`` with pools."""
        return {(f"detect-{i}" if len(self.kinds) == 1 else f"detect-{kind}-{i}"): kind
                for kind in self.kinds for i in range(self.args.workers)}

    def _start_stages(self) -> None:
        for name in self._stage_commands():
            self._start(name)

    def _start(self, name: str) -> None:
        """Start (or restart) one stage process."""
        if name in self.processes:
            self.metrics_relay.last_heard.pop((HOST, self.processes[name].pid), None)
        self.hung.pop(name, None)
        self.processes[name] = subprocess.Popen([sys.executable, *self._stage_commands()[name]],
                                                env=_stage_environment(), preexec_fn=_stage_preexec)
        self.started[name] = time.monotonic()

    def last_heard(self) -> dict[str, float]:
        """Stage name -> time.monotonic() of its current process's latest heartbeat (absent before the first)."""
        heard = self.metrics_relay.last_heard
        return {name: heard[(HOST, p.pid)][1] for name, p in self.processes.items() if (HOST, p.pid) in heard}

    def remote_workers(self) -> int:
        """Detect workers outside this launcher (``launch.py worker`` over --worker-links) heard from lately."""
        if not self.remote:
            return 0
        ours = {(HOST, p.pid) for p in self.processes.values()}
        recent = time.monotonic() - (self.args.heartbeat_timeout or REMOTE_WORKER_SILENCE_S)
        return sum(stage == "detect" and at >= recent and key not in ours
                   for key, (stage, at) in list(self.metrics_relay.last_heard.items()))

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

    def served(self) -> dict[str, tuple]:
        """The detect options a job may set, each with the values the running workers serve (a job's default
        first): a worker serves every job with what it loaded, so a job may ask for these values only."""
        return {option.name: self.kinds if option is DETECTOR else (getattr(self.args, option.name),)
                for option in DETECT.options if option.job is not None}

    def refusal(self, options: dict) -> str | None:
        """Why the running workers cannot serve a job with ``options``, or None."""
        for name, values in self.served().items():
            if name in options and options[name] not in values:
                option = DETECT[name]
                words = option.argv(options[name])  # a switch's default value: no flag
                how = f"with {' '.join(words)}" if words else f"without {option.flag}"
                return (f"job asks for {name} {options[name]!r}, but this pipeline's workers run "
                        f"{', '.join(map(repr, values))} (start one {how} to serve it)")
        return None

    def readiness(self) -> dict[str, dict[str, int]]:
        """Detector kind -> ``workers`` (how many this pipeline runs) and ``ready`` (how many of them have
        loaded their model: a worker's first heartbeat comes only after its detector is built), each
        counting ``remote`` workers: those on other hosts heard from lately, all of the one kind
        --worker-links serves."""
        heard = self.last_heard()
        workers = self.workers()
        remote = self.remote_workers()
        return {kind: {"workers": sum(of == kind for of in workers.values()) + remote,
                       "ready": sum(of == kind and self.processes[name].poll() is None and name in heard
                                    for name, of in workers.items()) + remote,
                       "remote": remote} for kind in self.kinds}

    def ready(self) -> bool:
        """Every stage runs and has sent a heartbeat, every detect worker with its model loaded, and each
        detector kind has a worker (with ``--workers 0``, one on another host)."""
        heard = self.last_heard()
        return (all(process.poll() is None and name in heard for name, process in self.processes.items())
                and all(kind["ready"] > 0 for kind in self.readiness().values()))

    def submit(self, source: str, job_id: str | None = None, options: dict | None = None,
               source_from: str | None = None) -> str:
        """Queue a job (``source_from``: what the backend gave, when ``source`` is a file posebus made of it);
        raises ValueError for a job id in use or options the workers cannot serve."""
        job_id = job_id or uuid.uuid4().hex[:12]
        if job_id in self.records:
            raise ValueError(f"job id {job_id} is already in use")
        problem = self.refusal(options or {})
        if problem:
            raise ValueError(problem)
        defaults = {name: values[0] for name, values in self.served().items() if values[0] is not None}  # no --fov
        request = messages.job_request(job_id, source, {**defaults, **(options or {})}, source_from)
        self.records[job_id] = JobRecord(job_id, source, options=request["options"])
        self.queued.append(request)
        self._start_queued()
        return job_id

    def running(self) -> list[JobRecord]:
        return [r for r in self.records.values() if r.state == "running"]

    def _start_queued(self) -> None:
        """Hand decode the queued jobs that have a free lane; number the rest."""
        while self.queued and len(self.running()) < self.args.max_jobs:
            request = self.queued.pop(0)
            record = self.records[request["job"]]
            record.state, record.queue_position = "running", None
            self.unsent.append(request)
        for position, request in enumerate(self.queued, 1):
            self.records[request["job"]].queue_position = position
        self._send_pending()

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
        record = self.records[job_id]
        if any(m["job"] == job_id for m in self.queued + self.unsent):  # decode never had it
            self.queued = [m for m in self.queued if m["job"] != job_id]
            self.unsent = [m for m in self.unsent if m["job"] != job_id]
            record.state, record.error, record.queue_position = "failed", error, None
            self._start_queued()
            return
        self.unsent.append(messages.cancel(job_id, error))
        self._send_pending()

    def restart_dead(self) -> None:
        for name, process in list(self.processes.items()):
            if process.poll() is not None:
                self._start(name)

    def fail_running_jobs(self, reason: str) -> None:
        """A stage the running jobs need died: end each of them with an error (the queued ones then run).

        With the track stage alive (decode died), the launcher ends the jobs there. Without it, decode ends
        them and moves on; a restarted track stage publishes those job_ends alone (it never had the job_starts).
        """
        for record in self.running():
            if self.processes["track"].poll() is None:
                sockets.send(self.events_out, messages.job_end(record.id, 0, reason))
            else:
                self.cancel(record.id, reason)
            record.state, record.error = "failed", reason
        self._start_queued()

    def poll(self, timeout_ms: int) -> list[dict]:
        """Status messages that arrived within ``timeout_ms``, applied to the job records (a job that
        ended frees its lane for the next queued one)."""
        self._send_pending()
        arrived = []
        while self.status_in.poll(timeout_ms):
            timeout_ms = 0
            try:
                message = sockets.receive(self.status_in, "status")
            except sockets.MALFORMED as exc:
                self.bad.drop(exc)
                continue
            record = self.records.get(message["job"])
            if record is not None and record.state == "running":  # a failed job's late messages change nothing
                record.frames = message["frames"]
                if message["type"] == "progress":
                    record.with_person, record.detection_failed = message["with_person"], message["detection_failed"]
                else:
                    record.state, record.error = ("done", None) if message["status"] == "ok" else (
                        "failed", message["error"])
            arrived.append(message)
        self._start_queued()
        return arrived

    def stop(self) -> None:
        """Stop every stage (SIGTERM, then SIGKILL after a grace period) and remove the ipc folder.

        The track stage's grace covers the output files it is still writing, if any were asked for."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        started = time.monotonic()
        writes_outputs = outputs.asked_for(vars(self.args))
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
