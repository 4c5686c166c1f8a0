"""Settings declared once: each option's flag, default, help, which processes take it and what a job may set.

An ``Option`` is one line of a ``Table``; the tables of the pipeline's groups are in
``options.groups`` (decode, track, outputs) and, for detectors, in each detector's own
module (``detectors.register``). From them come the argparse flags of ``launch.py`` and
of each stage (``add_flags``), the command lines the launcher gives its stages
(``argv``), and the options a submitted job may set (``job_spec``, in ``bus.messages``).
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from bus.schema import Struct

LAUNCH = "launch"  # the process that takes every option it forwards: launch.py


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def pixel_size(text: str) -> tuple[float, float]:
    """'WxH' in pixels -> (W, H), both at least 0."""
    try:
        width, height = (float(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT in pixels, e.g. 50x100, not {text!r}") from None
    if not (width >= 0 and height >= 0):
        raise argparse.ArgumentTypeError(f"a size must not be negative: {text!r}")
    return width, height


def pixel_size_text(text: str) -> str:
    """An argparse type: a valid 'WxH' kept as written (so that it is forwarded as given)."""
    pixel_size(text)
    return text


@dataclass(frozen=True)
class Option:
    """One setting. ``type`` ``bool`` makes a switch: ``--x`` turns a default-False setting on,
    ``--no-x`` (with ``dest``) a default-True one off. ``help`` may say ``%(default)s``."""

    flag: str
    help: str
    type: Callable = str
    default: Any = None
    takers: tuple[str, ...] = ()  # the processes with this flag: "launch", "decode", "detect", "track"
    choices: tuple | None = None
    metavar: str | None = None
    dest: str | None = None  # default: the flag's name, dashes as underscores
    job: Any = None  # the bus.schema spec of the value a job may set; None: not a job's to set
    param: str | None = None  # the keyword a factory takes it as (detectors.register); default: dest

    @property
    def name(self) -> str:
        return self.dest or self.flag.lstrip("-").replace("-", "_")

    @property
    def keyword(self) -> str:
        return self.param or self.name

    def add_to(self, parser: argparse._ActionsContainer) -> None:
        if self.type is bool:
            parser.add_argument(self.flag, dest=self.name, help=self.help,
                                action="store_false" if self.default else "store_true")
            return
        parser.add_argument(self.flag, dest=self.name, type=self.type, default=self.default, choices=self.choices,
                            metavar=self.metavar, help=self.help)

    def argv(self, value: Any) -> list[str]:
        """The command-line words that give a process this ``value``."""
        if self.type is bool:
            return [self.flag] if value != self.default else []
        return [] if value is None else [self.flag, str(value)]


@dataclass(frozen=True)
class Table:
    """A group's options (decode, detect, track, outputs), shown together in ``--help``."""

    group: str
    options: tuple[Option, ...]
    by_name: dict[str, Option] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names = [option.name for option in self.options]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ValueError(f"{self.group} options declared twice: {', '.join(sorted(duplicates))}")
        object.__setattr__(self, "by_name", dict(zip(names, self.options)))

    def __getitem__(self, name: str) -> Option:
        return self.by_name[name]

    def taken_by(self, process: str) -> tuple[Option, ...]:
        return tuple(option for option in self.options if process in option.takers)

    def values(self, settings: Mapping[str, Any] | argparse.Namespace) -> dict[str, Any]:
        """The table's settings, by name, out of a parsed namespace or a map (absent ones at their default)."""
        settings = vars(settings) if isinstance(settings, argparse.Namespace) else settings
        return {option.name: settings.get(option.name, option.default) for option in self.options}


def add_flags(parser: argparse.ArgumentParser, process: str, *tables: Table) -> None:
    """The flags ``process`` takes from ``tables``, one argument group per table."""
    for table in tables:
        taken = table.taken_by(process)
        if taken:
            group = parser.add_argument_group(f"{table.group} options")
            for option in taken:
                option.add_to(group)


def argv(process: str, settings: Mapping[str, Any] | argparse.Namespace, *tables: Table) -> list[str]:
    """The command line that hands ``process`` the ``settings`` (by name) of the options it takes."""
    settings = vars(settings) if isinstance(settings, argparse.Namespace) else settings
    return [word for table in tables for option in table.taken_by(process)
            for word in option.argv(settings.get(option.name, option.default))]


def job_spec(*tables: Table) -> Struct:
    """The schema of the options a job may set (``job`` and ``submit`` messages)."""
    return Struct({}, {option.name: option.job for table in tables for option in table.options
                       if option.job is not None})


def merged(group: str, options: Iterable[Option]) -> Table:
    """One table of options that several owners may share (the same ``Option`` object counts once);
    two different options under one flag are refused."""
    kept: dict[str, Option] = {}
    for option in options:
        if kept.setdefault(option.flag, option) != option:
            raise ValueError(f"{option.flag} is declared twice, differently")
    return Table(group, tuple(kept.values()))

