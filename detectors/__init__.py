"""Detector backends behind one interface (``detectors.base.Detector``), and their registry.

A detector registers itself once, in its own module, with its name, its options and a
factory (``register``); ``--detector``, the detect stage's flags, what the launcher
forwards to its workers and ``create`` all come from the registry. Adding a detector is
its module and one line in ``MODULES``.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

from detectors.base import Detector
from options import Option, Table, merged
from options.groups import DETECTOR

# Each registers itself on import; imported only when the registry is read (they import lazily what they run on).
MODULES = ("detectors.blazepose", "detectors.hmr2")


@dataclass(frozen=True)
class Registered:
    name: str
    factory: Callable[..., Detector]  # called with each of ``options`` as its keyword (``Option.keyword``)
    options: tuple[Option, ...]


_registry: dict[str, Registered] = {}


def register(name: str, factory: Callable[..., Detector], *options: Option) -> None:
    """Make ``name`` a detector: ``--detector name`` builds it with ``factory(**its options)``.
    Its options are flags of the launcher and the detect stage (unless they say otherwise); a flag
    is one detector's to declare, and one that several detectors share is one ``Option`` object."""
    if name in _registry:
        raise ValueError(f"detector {name!r} registered twice")
    _registry[name] = Registered(name, factory, tuple(replace(option, takers=option.takers or DETECTOR.takers)
                                                      for option in options))


def registered() -> dict[str, Registered]:
    for module in MODULES:
        importlib.import_module(module)
    return _registry


def table() -> Table:
    """The detect group's options: ``--detector`` (one of the registered names), then every detector's own."""
    entries = sorted(registered().values(), key=lambda entry: entry.name)
    return merged("detect", (replace(DETECTOR, choices=tuple(entry.name for entry in entries)),
                             *(option for entry in entries for option in entry.options)))


def create(name: str, settings: Mapping[str, Any]) -> Detector:
    """Build detector ``name`` from ``settings`` (by option name; absent ones at their default):
    it gets its own options only."""
    entry = registered().get(name)
    if entry is None:
        raise ValueError(f"unknown detector {name!r} (choose from {', '.join(sorted(_registry))})")
    return entry.factory(**{option.keyword: settings.get(option.name, option.default) for option in entry.options})
