"""Result files for the app, built from one job's public messages (no sockets here).

``outputs.app_json``: the JSON document SnowboardingExplained stores per video.
``outputs.overlay``: the overlay video (skeleton, box, track state, mesh silhouette).
``outputs.gltf``, ``outputs.bvh``: each tracked person's animation (``outputs.animation``).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from bus.events import event

# The per-job files asked for with --report, --app-json, --overlay, --gltf, --bvh (the report lives in ``report``).
OUTPUT_FILES = ("report", "app_json", "overlay", "gltf", "bvh")


def write_files(wanted: dict[str, Path | None], job: str, start: dict | None, end: dict, results: list[dict],
                log) -> None:
    """The files asked for (``OUTPUT_FILES`` name -> folder, or None) for an ended job, made from its
    published messages ``results``, into FOLDER/<job>.html|json|mp4 and FOLDER/<job>.track<id>.glb|bvh.
    An HMR 2.0 job's animations use the SMPL model of the checkpoint in the 4D-Humans cache
    (this stage is not told ``--checkpoint``); without one they are keypoint skeletons.

    ``start`` and ``end`` are the job_start and job_end decode sent (``start`` None when the
    stage never had it); without ``start``, or when ``end`` has an error, only the report is written.
    """
    # matplotlib and friends: only paid for when asked
    from outputs.animation import find_smpl_model
    from outputs.app_json import write_app_json
    from outputs.bvh import write_bvh
    from outputs.gltf import write_gltf
    from outputs.overlay import render_overlay
    from report import write_report

    @functools.cache  # once for both formats: it reads the whole checkpoint
    def smpl():
        published_start = next((m for m in results if m["type"] == "job_start"), {})  # decode's has no detector
        return find_smpl_model() if published_start.get("detector") == "hmr2" else None

    writers = {"report": lambda m, folder: write_report(m, folder / f"{job}.html"),
               "app_json": lambda m, folder: write_app_json(m, folder / f"{job}.json"),
               "overlay": lambda m, folder: render_overlay(start["source"], m, folder / f"{job}.mp4"),
               "gltf": lambda m, folder: write_gltf(m, folder, smpl()),
               "bvh": lambda m, folder: write_bvh(m, folder, smpl())}
    for name, folder in wanted.items():
        if folder is None or (name != "report" and (start is None or end.get("error"))):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        try:
            writers[name](results, folder)
        except Exception as exc:  # an output file failing must not take the stage down
            event(log, logging.ERROR, "output_failed", job=job, output=name, error=exc)
