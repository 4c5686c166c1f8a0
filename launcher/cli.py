"""posebus launcher: runs the decode, detect and track stages as processes.

    posebus run VIDEO [options]    run one job end to end, exit 0 when its job_end is published;
                                   1 when the job failed or detection failed on every frame
                                   (posebus VIDEO [options] too)
    posebus serve [options]        keep running and take jobs on the control socket
    posebus status [--once]        a live table of every stage's metrics (--metrics ENDPOINT)
    posebus worker --worker-links tcp://HOST:PORT
                                   a detect worker on this host for a pipeline on HOST
    posebus models                 report which model files were found, and how to get the rest
    posebus download-models        fetch the BlazePose bundle (--blazepose-model), and with --detector hmr2
                                   the HMR 2.0 archive, into the user cache (resumable)

``posebus`` is the installed command (pyproject's [project.scripts]); from a checkout,
``python launch.py`` is the same command line.

Internal links are ipc sockets in a private temporary folder; the results
socket (default tcp://127.0.0.1:5555) and the control socket (serve,
default tcp://127.0.0.1:5556) are for backends. With --worker-links
tcp://ADDR:PORT the links a detect worker uses are also bound on tcp there
(frames PORT, detections PORT+1, metrics PORT+2), CURVE required off
loopback, so workers on other hosts can join (see docs/security.md).
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from pathlib import Path

import zmq

import detectors
import options
import outputs
from bus import sockets
from bus.metrics import DEFAULT_INTERVAL_S
from launcher import monitor, uploads
from launcher.control import serve
from launcher.pipeline import Pipeline
from launcher.progress import ProgressBar
from launcher.workers import check_worker_links, detector_argv, worker_links
from options.groups import DECODE, TRACK, TRACKER
from stages import runtime

# A stage silent this long is hung: killed, then handled like one that died. A stage beats between
# detector batches, so the timeout must exceed the slowest batch: HMR 2.0's ViT-H takes ~2.7 s a person
# crop on a CPU (bench/RESULTS.md), a batch of 8 frames of a few people each takes minutes.
HEARTBEAT_TIMEOUT_S = 30.0
HEARTBEAT_TIMEOUT_HMR2_CPU_S = 600.0


def worker(args: argparse.Namespace) -> int:
    """Run a detect worker here for the pipeline whose --worker-links is ``args.worker_links``."""
    from stages import detect

    links = worker_links(args.worker_links)
    argv = ["--frames", links["frames"], "--detections", links["detections"], "--metrics-link", links["stage_metrics"],
            *detector_argv(args), *runtime.security_argv(runtime.security_from_args(args)),
            "--log-level", args.log_level]
    runtime.run(lambda: detect.main(argv))
    return 0


def run_one(args: argparse.Namespace) -> int:
    from video.sources import SourceError, is_live, open_source

    total = None  # only for the progress bar: decode reports a bad source as the job's error
    if not is_live(args.source):  # a silent stream would hold the start for its whole timeout
        try:
            total = open_source(args.source).info.frame_count
        except SourceError:
            pass
    pipeline = Pipeline(args)
    if sockets.ANY_PORT in (args.results, args.history):  # the track stage prints the ports it got
        print(f"posebus: metrics {args.metrics}", file=sys.stderr, flush=True)
    bar = ProgressBar(total)
    try:
        job = pipeline.submit(args.source, args.job)
        record = pipeline.records[job]
        while record.state not in ("done", "failed"):
            pipeline.poll(200)
            bar.update(record)
            dead = pipeline.supervise()
            if dead:
                pipeline.fail_running_jobs(f"stage stopped: {', '.join(dead)}")
        bar.close()
        if record.state == "failed":
            print(f"posebus: error: job {job}: {record.error}", file=sys.stderr)
            return 1
        print(f"posebus: job {job}: {record.frames} frames, person in {record.with_person}, "
              f"detection failed on {record.detection_failed}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        bar.close()
        print("posebus: interrupted", file=sys.stderr)
        return 130
    finally:
        pipeline.stop()


def models(args: argparse.Namespace) -> int:
    """Report the model files: what was found, what to get for the rest."""
    from detectors import blazepose_models
    from detectors.hmr2.weights import find_checkpoint, missing_checkpoint_report

    blazepose_models.status(blazepose_models.MODELS, blazepose_models.cache_dir())
    found, searched = find_checkpoint(args.checkpoint, args.cache_dir)
    if found:
        print(f"hmr2: checkpoint found at {found}")
    else:
        print("hmr2: " + missing_checkpoint_report(searched, args.url))
    from detectors.hmr2.boxes import vitdet_cache, vitdet_report

    print(vitdet_report(vitdet_cache(found, args.cache_dir)))
    return 1 if blazepose_models.check_bundle(args.blazepose_model) or not found else 0


def download_models(args: argparse.Namespace) -> int:
    """The BlazePose bundle of --blazepose-model, and with --detector hmr2 the HMR 2.0 archive."""
    from detectors import blazepose_models
    from detectors.hmr2.weights import candidate_cache_dirs, fetch_checkpoint

    try:
        print(f"blazepose {args.blazepose_model}: ready at {blazepose_models.download(args.blazepose_model)}")
        if args.detector == "hmr2":
            cache = Path(args.cache_dir) if args.cache_dir else candidate_cache_dirs()[0]
            print(f"hmr2: checkpoint ready at {fetch_checkpoint(cache, args.url)}")
            if args.boxes == "vitdet":
                from detectors.hmr2.boxes import fetch_vitdet_weights

                print(f"vitdet: weights ready at {fetch_vitdet_weights(cache)}")
        return 0
    except (OSError, blazepose_models.ModelUnavailable) as exc:
        print(f"posebus: error: download failed: {exc} (run again to resume)", file=sys.stderr)
        return 1


def ensure_blazepose_model(args: argparse.Namespace) -> bool:
    """Before any stage starts: the BlazePose bundle in the cache (downloaded or built on first use),
    or False after saying why not. HMR 2.0 needs it too when BlazePose gives its person boxes."""
    from detectors import blazepose_models

    try:
        blazepose_models.ensure(args.blazepose_model)
        return True
    except blazepose_models.ModelUnavailable as exc:
        print(f"posebus: error: {exc}", file=sys.stderr)
        return False


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


def default_endpoints(args: argparse.Namespace) -> None:
    """The results, history and metrics endpoints not given. A one-off run without --results takes ports
    that no other run holds (so any number run side by side); the others take the well-known ports."""
    if args.results is None and args.command == "run":
        args.history, args.metrics = args.history or sockets.ANY_PORT, args.metrics or sockets.ANY_PORT
    args.results = args.results or (sockets.ANY_PORT if args.command == "run" else sockets.LINKS["results"].default)
    args.history = args.history or beside(args.results, 7, "history")
    args.metrics = args.metrics or beside(args.results, 8, "metrics")


COMMANDS = {
    "run": "run one job end to end (the default: posebus VIDEO runs VIDEO)",
    "serve": "keep running and take jobs on the control socket",
    "status": "a live table of every stage's metrics",
    "worker": "a detect worker on this host for the pipeline whose --worker-links is given",
    "models": "report which model files were found, and how to get the rest",
    "download-models": "fetch the BlazePose bundle (--blazepose-model), and with --detector hmr2 the HMR 2.0 "
                       "archive, into the user cache (resumable)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv.insert(0, "run")  # posebus VIDEO: the command line before subcommands
    common = argparse.ArgumentParser(add_help=False)
    add_flags(common)
    parser = argparse.ArgumentParser(prog="posebus", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        command = commands.add_parser(name, parents=[common], help=summary, description=summary)
        if name == "run":
            command.add_argument("source", help="video file, image folder, camera index or stream URL")
        if name == "status":
            command.add_argument("--once", action="store_true", help="print one table and exit")
    args = parser.parse_args(argv)
    known = detectors.registered()
    unknown = [kind for kind in args.detectors or () if kind not in known]
    if unknown:
        parser.error(f"--detectors: unknown detector {', '.join(unknown)} (choose from {', '.join(sorted(known))})")
    if args.detectors and args.detector not in args.detectors:
        args.detector = args.detectors[0]  # the kind a job that names none gets
    args.detectors = list(dict.fromkeys(args.detectors or [args.detector]))
    if args.heartbeat_timeout is None:
        args.heartbeat_timeout = default_heartbeat_timeout(args.detectors, args.device)
    elif args.heartbeat_timeout != 0 and args.heartbeat_timeout <= DEFAULT_INTERVAL_S:
        parser.error(f"--heartbeat-timeout must be more than the {DEFAULT_INTERVAL_S:g} s between heartbeats (0: off)")
    return args


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every command's flags: the pipeline's options, its endpoints, CURVE, the HMR 2.0 model files."""
    from detectors.hmr2.weights import DEFAULT_URL

    parser.add_argument("--workers", type=int, default=1, help="detect worker processes (default 1; per kind with "
                                                               "--detectors)")
    parser.add_argument("--detectors", type=lambda text: [kind.strip() for kind in text.split(",") if kind.strip()],
                        metavar="KIND,KIND",
                        help="a pool of --workers detect workers per detector kind, each job's frames going to the "
                             "pool of the detector it asks for (e.g. blazepose,hmr2); a job that names none gets "
                             "--detector if listed, else the first")
    options.add_flags(parser, options.LAUNCH, detectors.table(), DECODE, TRACK, TRACKER, outputs.table())
    parser.add_argument("--cache-dir", help="4D-Humans cache folder to look in for the HMR 2.0 checkpoint")
    parser.add_argument("--url", default=DEFAULT_URL, help="where download-models fetches the HMR 2.0 archive")
    parser.add_argument("--results", metavar="ENDPOINT",
                        help=f"where results are published (default {sockets.LINKS['results'].default}; a one-off "
                             "run: a free port on loopback, printed and given in job_start's endpoints)")
    parser.add_argument("--control", default=sockets.LINKS["control"].default, metavar="ENDPOINT")
    parser.add_argument("--max-upload-mb", type=options.positive_int, default=uploads.DEFAULT_MAX_MB, metavar="MB",
                        help="serve: the largest file a backend may upload over the control socket, in MiB "
                             "(default %(default)s)")
    parser.add_argument("--history", metavar="ENDPOINT",
                        help="where backends ask for a job's results from any frame (replay); "
                             "default: the results endpoint's port + 7 (tcp://127.0.0.1:5562; a one-off run "
                             "without --results: a free port)")
    parser.add_argument("--metrics", metavar="ENDPOINT",
                        help="where the stages' metrics are published (status reads them here); "
                             "default: the results endpoint's port + 8 (tcp://127.0.0.1:5563; a one-off run "
                             "without --results: a free port, printed)")
    parser.add_argument("--prometheus", type=int, metavar="PORT",
                        help="serve the metrics to Prometheus on 127.0.0.1:PORT (needs prometheus-client)")
    parser.add_argument("--worker-links", metavar="tcp://ADDR:PORT",
                        help="also bind the detect workers' links here (frames PORT, detections PORT+1, metrics "
                             "PORT+2) for workers on other hosts, CURVE required off loopback; "
                             "worker: the pipeline's --worker-links to join")
    runtime.add_job_flag(parser)
    parser.add_argument("--heartbeat-timeout", type=float, metavar="S",
                        help="kill a stage that sends no heartbeat for S seconds, then handle it like one that "
                             f"died (default {HEARTBEAT_TIMEOUT_S:g}; {HEARTBEAT_TIMEOUT_HMR2_CPU_S:g} for hmr2 on "
                             "a CPU, whose batches are slow; 0: never)")
    runtime.add_security_flags(parser)
    runtime.log_level_flag(parser, "warning")


def default_heartbeat_timeout(kinds: list[str], device: str) -> float:
    return HEARTBEAT_TIMEOUT_HMR2_CPU_S if "hmr2" in kinds and device == "cpu" else HEARTBEAT_TIMEOUT_S


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    default_endpoints(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s launch %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runtime.dump_stacks_on_sigusr1()
    if args.command == "models":
        return models(args)
    if args.command == "download-models":
        return download_models(args)
    if args.command == "status":
        return monitor.status(args.metrics, args.once, runtime.security_from_args(args))
    if args.command == "worker" and not args.worker_links:
        print("posebus: error: worker needs the pipeline's --worker-links tcp://HOST:PORT", file=sys.stderr)
        return 1
    problem = check_worker_links(args) if args.worker_links else None
    if problem:
        print(f"posebus: error: {problem}", file=sys.stderr)
        return 1
    if "hmr2" in args.detectors:
        args.checkpoint = resolve_checkpoint(args)
        if args.checkpoint is None:
            return 1
    if ("blazepose" in args.detectors or args.boxes in ("auto", "blazepose")) and not ensure_blazepose_model(args):
        return 1
    if args.command == "worker":
        return worker(args)
    try:
        return serve(args) if args.command == "serve" else run_one(args)
    except zmq.ZMQError as exc:  # e.g. an endpoint already in use
        print(f"posebus: error: {exc}", file=sys.stderr)
        return 1

