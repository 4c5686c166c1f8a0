"""Result files for the app, built from one job's public messages (no sockets here).

``outputs.app_json``: the JSON document SnowboardingExplained stores per video.
``outputs.overlay``: the overlay video (skeleton, box, track state, mesh silhouette).
"""
from __future__ import annotations

import logging
from pathlib import Path

from bus.events import event

# The per-job files asked for with --report, --app-json, --overlay (the report lives in ``report``).
OUTPUT_FILES = ("report", "app_json", "overlay")


def write_files(wanted: dict[str, Path | None], job: str, start: dict | None, end: dict, results: list[dict],
                log) -> None:
    """The files asked for (``OUTPUT_FILES`` name -> folder, or None) for an ended job, made from its
    published messages ``results``, into FOLDER/<job>.html|json|mp4.

    ``start`` and ``end`` are the job_start and job_end decode sent (``start`` None when the
    stage never had it); without ``start``, or when ``end`` has an error, only the report is written.
    """
    # matplotlib and friends: only paid for when asked
    from outputs.app_json import write_app_json
    from outputs.overlay import render_overlay
    from report import write_report

    writers = {"report": (write_report, "html"), "app_json": (write_app_json, "json"),
               "overlay": (lambda m, path: render_overlay(start["source"], m, path), "mp4")}
    for name, folder in wanted.items():
        if folder is None or (name != "report" and (start is None or end.get("error"))):
            continue
        write, suffix = writers[name]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            write(results, folder / f"{job}.{suffix}")
        except Exception as exc:  # an output file failing must not take the stage down
            event(log, logging.ERROR, "output_failed", job=job, output=name, error=exc)
