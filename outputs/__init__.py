"""Result files, each built from one job's published messages after the job ends (no sockets here).

Every file output is one line of ``FILES``: the flag that asks for it, the file's suffix,
when it is written and the function that writes it (``module:function``, imported only
when a file is written: matplotlib and friends are paid for only when asked). Every file is
written under a temporary name and renamed into place when complete (``outputs.atomic``);
``write_files`` says which are complete and which failed, for the job's ``job_end``
(``outputs`` and ``output_errors``, keyed by the option's name).

``outputs.app_json``: the JSON document SnowboardingExplained stores per video.
``outputs.overlay``: the overlay video (skeleton, box, track state, mesh silhouette).
``outputs.phalp``: PHALP's results ``.pkl``.
``outputs.report``: the HTML report (``python -m outputs.report``).
``outputs.gltf``, ``outputs.bvh``: each tracked person's animation (``outputs.animation``).
"""
from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.logline import log_line
from options import LAUNCH, Option, Table, merged
from options.groups import OUTPUTS
from outputs.atomic import replacing

ALWAYS, STARTED, SUCCEEDED = "always", "started", "succeeded"  # when a file is written: see FileOutput.wanted


@dataclass(frozen=True)
class FileOutput:
    """A file per job: ``--flag DIR`` writes DIR/<job>.SUFFIX, ``--flag FILE.SUFFIX`` that one file."""

    option: Option
    suffix: str
    writer: str  # "module:function", called with (the job's published messages, the path)
    when: str = SUCCEEDED  # ALWAYS (even a job that never started: the report says why), STARTED, SUCCEEDED
    per_track: bool = False  # the writer names its files (one per track), writes each atomically, returns them
    takes: tuple[str, ...] = ()  # the stage's settings the writer takes as keywords (the animations: checkpoint)

    def path(self, where: Path, job: str) -> Path:
        return where if where.suffix == f".{self.suffix}" else where / f"{job}.{self.suffix}"

    def wanted(self, start: dict | None, end: dict) -> bool:
        return self.when == ALWAYS or start is not None and (self.when == STARTED or not end.get("error"))

    def write(self, results: list[dict], path: Path, settings: Mapping[str, Any]) -> str | list[str]:
        """Write the file(s); returns the absolute path, or the paths of a per-track output."""
        module, function = self.writer.split(":")
        write = functools.partial(getattr(importlib.import_module(module), function),
                                  **{name: settings.get(name) for name in self.takes})
        if self.per_track:
            return [str(Path(written).absolute()) for written in write(results, path)]
        with replacing(path) as temporary:
            write(results, temporary)
        return str(path.absolute())


def _asks(flag: str, what: str) -> Option:
    return Option(flag, what, Path, takers=(LAUNCH, "track"), metavar="DIR")


FILES = (
    FileOutput(_asks("--report", "write an HTML report per job to DIR/<job>.html"), "html",
               "outputs.report:write_report", ALWAYS),
    FileOutput(_asks("--app-json", "write the app's JSON document per job to DIR/<job>.json"), "json",
               "outputs.app_json:write_app_json"),
    FileOutput(_asks("--overlay", "write an overlay video per job to DIR/<job>.mp4"), "mp4",
               "outputs.overlay:write_overlay"),
    FileOutput(_asks("--phalp-pkl", "also write PHALP-format results to DIR/<job>.pkl (or to PATH.pkl)"), "pkl",
               "outputs.phalp:write_phalp", STARTED),
    FileOutput(_asks("--gltf", "write each tracked person's animation to DIR/<job>.track<id>.glb (glTF 2.0)"), "glb",
               "outputs.gltf:write", per_track=True, takes=("checkpoint",)),
    FileOutput(_asks("--bvh", "write each tracked person's animation to DIR/<job>.track<id>.bvh"), "bvh",
               "outputs.bvh:write", per_track=True, takes=("checkpoint",)),
)


def table() -> Table:
    """The outputs group: where results go besides the live socket, the files among them."""
    return merged("outputs", (*OUTPUTS.options, *(output.option for output in FILES)))


def asked_for(settings: Mapping[str, Any]) -> bool:
    return any(settings.get(output.option.name) for output in FILES)


def write_files(settings: Mapping[str, Any], job: str, start: dict | None, end: dict, results: list[dict],
                log) -> tuple[dict[str, str | list[str]], dict[str, str]]:
    """The files ``settings`` ask for, for an ended job, made from its published messages ``results``.

    ``start`` is the job_start decode sent (None when the stage never had it), ``end`` the job_end to be
    published once the files are written. Returns ({output: path, or paths for a per-track output} of the
    files complete, {output: error} of those that failed), keyed by the option's name (``app_json``, ...).
    """
    written, failed = {}, {}
    for output in FILES:
        name, where = output.option.name, settings.get(output.option.name)
        if where is None or not output.wanted(start, end):
            continue
        path = output.path(Path(where), job)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            written[name] = output.write(results, path, settings)
        except Exception as exc:  # an output file failing must not take the stage down
            failed[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            log_line(log, logging.ERROR, "output_failed", job=job, output=name, error=exc)
    return written, failed
