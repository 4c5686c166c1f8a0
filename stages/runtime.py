"""What every stage process does at start: logging, signals, endpoint, CURVE and metrics flags."""
from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import zmq

from bus import sockets
from bus.metrics import DEFAULT_INTERVAL_S, StageMetrics
from bus.security import Curve, keys_dir
from bus.sockets import LINKS


def add_endpoint_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        parser.add_argument(f"--{name}", default=LINKS[name].default, metavar="ENDPOINT",
                            help=f"{name} link (default {LINKS[name].default})")


def add_remote_flag(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(f"--remote-{name}", metavar="ENDPOINT",
                        help=f"also bind the {name} link here, for detect workers on other hosts "
                             "(tcp; with CURVE off loopback)")


def remote_endpoints(args: argparse.Namespace, name: str) -> tuple[str, ...]:
    """The endpoints of ``--remote-NAME`` (none or one), as ``sockets.bind`` takes them."""
    endpoint = getattr(args, f"remote_{name}")
    return (endpoint,) if endpoint else ()


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--curve-name", metavar="NAME",
                        help="turn CURVE on for tcp links with this key pair from the key store")
    parser.add_argument("--curve-server", metavar="NAME",
                        help="public key (in the key store) of the server this process connects to")
    parser.add_argument("--curve-keys", metavar="DIR",
                        help="key store (default $POSEBUS_KEYS, else ~/.config/posebus/keys)")


def security_from_args(args: argparse.Namespace) -> Curve | None:
    """The CURVE settings of the flags; None (no CURVE) without --curve-name."""
    if args.curve_name is None:
        return None
    return Curve(keys_dir(args.curve_keys), args.curve_name, args.curve_server)


def security_argv(security: Curve | None) -> list[str]:
    """The flags that give a stage process these CURVE settings."""
    if security is None:
        return []
    return ["--curve-keys", str(security.keys_dir), "--curve-name", security.own_name,
            *(["--curve-server", security.server_name] if security.server_name else [])]


_stop = threading.Event()


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 PID`` prints every thread's stack to stderr: what a process that hangs is waiting on."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def start(stage: str, log_level: str = "info", graceful: bool = False) -> logging.Logger:
    """Configure logging, make SIGTERM end the process, and SIGUSR1 dump its stacks.

    By default SIGTERM interrupts like Ctrl-C does. ``graceful`` stages (track)
    instead finish what they are doing and leave their loop (``stop_requested``),
    so a message is never cut half-way between its log and its socket.
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s stage={stage} level=%(levelname)s %(message)s")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, (lambda signum, frame: _stop.set()) if graceful else interrupt)
    dump_stacks_on_sigusr1()
    return logging.getLogger(f"posebus.{stage}")


def stop_requested() -> bool:
    return _stop.is_set()


def run(main) -> None:
    """Run a stage's main; an interrupt (Ctrl-C, SIGTERM) at any point ends it quietly,
    and a socket that cannot bind ends it with one line instead of a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        pass
    except zmq.ZMQError as exc:
        print(f"posebus: error: {exc}", file=sys.stderr)
        sys.exit(1)


def log_level_flag(parser: argparse.ArgumentParser, default: str = "info") -> None:
    parser.add_argument("--log-level", default=default, choices=["debug", "info", "warning", "error"])


def add_job_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", help="job id of the source (default: random)")


def add_replay_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--replay JOB_DIR``: run the stage on a recording (``--record``) instead of the bus, then exit."""
    parser.add_argument("--replay", type=Path, metavar="JOB_DIR",
                        help=f"{what} a recorded job (DIR/<job> of --record) instead of the bus, then exit")


def add_metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-link", default=LINKS["stage_metrics"].default, metavar="ENDPOINT",
                        help="publish this stage's metrics to the launcher here "
                             f"(default {LINKS['stage_metrics'].default})")
    parser.add_argument("--metrics-interval", type=float, default=DEFAULT_INTERVAL_S, metavar="S",
                        help=f"seconds between metrics snapshots (default {DEFAULT_INTERVAL_S:g})")
    parser.add_argument("--worker-id", help="this process's name in the metrics (default HOST:PID)")


def start_metrics(ctx: zmq.Context, args: argparse.Namespace, stage: str, drops: sockets.Counter,
                  security: Curve | None = None) -> StageMetrics:
    """The stage's metrics, counting the errors it logs and publishing on a PUB socket to the launcher."""
    metrics = StageMetrics(stage, args.worker_id or f"{socket.gethostname()}:{os.getpid()}",
                           args.metrics_interval, drops=drops)
    metrics.count_errors_of(logging.getLogger("posebus"))  # every error of this process, bus code included
    metrics.out = sockets.connect(ctx, "stage_metrics", args.metrics_link, security=security)
    return metrics
