"""Log lines as ``key=value`` pairs (logfmt): one line per occurrence, easy to grep and to parse.

    log_line(log, logging.WARNING, "duplicate_dropped", job="abc", frame=12)
    -> ... stage=track level=WARNING event=duplicate_dropped job=abc frame=12

The stage comes from the log format (stages.runtime.start).
"""
from __future__ import annotations

import json
import logging


def log_line(log: logging.Logger, level: int, name: str, **fields) -> None:
    """Log one line: ``event=name`` (the key log readers grep for) and its fields, in the order given."""
    if log.isEnabledFor(level):  # no formatting for debug lines at the default level
        log.log(level, "%s", logfmt(event=name, **fields))


def logfmt(**fields) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)  # quoted, so the line still splits into pairs
    return text
