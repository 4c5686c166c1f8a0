"""What every stage process does at start: logging, signals, endpoint flags."""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from bus.sockets import LINKS


def add_endpoint_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        parser.add_argument(f"--{name}", default=LINKS[name].default, metavar="ENDPOINT",
                            help=f"{name} link (default {LINKS[name].default})")


def start(stage: str, log_level: str = "info") -> logging.Logger:
    """Configure logging and make SIGTERM end the process like Ctrl-C does."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {stage} %(levelname)s %(message)s")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    return logging.getLogger(f"posebus.{stage}")


def run(main) -> None:
    """Run a stage's main; an interrupt (Ctrl-C, SIGTERM) at any point ends it quietly."""
    try:
        main()
    except KeyboardInterrupt:
        pass


def log_level_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
