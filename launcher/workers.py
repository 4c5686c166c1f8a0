"""Detect workers: their detector flags, and the links that workers on other hosts join.

With ``--worker-links tcp://ADDR:PORT`` the launcher also binds the links a detect
worker uses on tcp (frames PORT, detections PORT+1, metrics PORT+2), CURVE required
off loopback; ``launch.py worker`` runs a worker that joins them (docs/security.md).
"""
from __future__ import annotations

import argparse
import re

import detectors
import options
from bus import sockets

WORKER_LINKS = ("frames", "detections", "stage_metrics")  # on --worker-links PORT, PORT+1, PORT+2


def detector_argv(args: argparse.Namespace, kind: str | None = None) -> list[str]:
    """The detector flags of a detect worker, as the launcher was given them (running ``kind``: a pool's)."""
    return options.argv("detect", {**vars(args), "detector": kind or args.detector}, detectors.table())


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
    if args.command == "worker" and args.curve_name is not None and args.curve_server is None:
        return "a worker with CURVE needs the pipeline's public key name (--curve-server)"
    if len(args.detectors) > 1:  # the links are the default pool's: a remote worker says not which kind it runs
        return (f"--worker-links serves one detector kind, but --detectors names {', '.join(args.detectors)} "
                f"(workers on other hosts would all join the {args.detector} pool): start a pipeline per kind")
    return None
