"""A tiny declarative checker for decoded messages.

Specs are plain values: a Python type (``int``, ``float``, ``str``, ``bool``;
``object`` accepts anything msgpack decodes),
or one of the classes below. ``check(value, spec)`` raises ``SchemaError``
naming the offending field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class SchemaError(ValueError):
    pass


@dataclass(frozen=True)
class Array:
    """A numpy array of this dtype; ``None`` in ``shape`` matches any size."""

    dtype: str
    shape: tuple
    max_items: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Optional:
    spec: Any


@dataclass(frozen=True)
class Between:
    """A number (``int`` or ``float`` spec) in [low, high]."""

    spec: Any
    low: float
    high: float


@dataclass(frozen=True)
class Enum:
    values: tuple


@dataclass(frozen=True)
class ListOf:
    spec: Any
    max_len: int = 10_000


@dataclass(frozen=True)
class MapOf:
    spec: Any
    max_len: int = 1_000


@dataclass(frozen=True)
class AnyOf:
    """A value that passes one of ``specs``."""

    specs: tuple


@dataclass(frozen=True)
class Struct:
    required: dict
    optional: dict = field(default_factory=dict)


def check(value: Any, spec: Any, path: str = "message") -> None:
    if spec is object:  # any decoded msgpack value
        return
    if isinstance(spec, Optional):
        if value is not None:
            check(value, spec.spec, path)
    elif spec is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{path} must be a number, got {type(value).__name__}")
    elif spec is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{path} must be an integer, got {type(value).__name__}")
    elif spec in (str, bool, bytes):
        if not isinstance(value, spec):
            raise SchemaError(f"{path} must be {spec.__name__}, got {type(value).__name__}")
    elif isinstance(spec, AnyOf):
        errors = []
        for option in spec.specs:
            try:
                return check(value, option, path)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(" or ".join(errors))
    elif isinstance(spec, Between):
        check(value, spec.spec, path)
        if not spec.low <= value <= spec.high:
            raise SchemaError(f"{path} must be between {spec.low} and {spec.high}, got {value}")
    elif isinstance(spec, Enum):
        if not isinstance(value, (str, int)) or value not in spec.values:
            raise SchemaError(f"{path} must be one of {', '.join(map(str, spec.values))}, got {value!r}")
    elif isinstance(spec, Array):
        if not isinstance(value, np.ndarray):
            raise SchemaError(f"{path} must be an array, got {type(value).__name__}")
        if value.dtype.str != spec.dtype:
            raise SchemaError(f"{path} must have dtype {spec.dtype}, got {value.dtype.str}")
        if len(value.shape) != len(spec.shape) or any(
            want is not None and got != want for got, want in zip(value.shape, spec.shape)
        ):
            raise SchemaError(f"{path} must have shape {spec.shape}, got {value.shape}")
        if value.size > spec.max_items:
            raise SchemaError(f"{path} has {value.size} items, more than {spec.max_items}")
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            raise SchemaError(f"{path} must be a list, got {type(value).__name__}")
        if len(value) > spec.max_len:
            raise SchemaError(f"{path} has {len(value)} items, more than {spec.max_len}")
        for i, item in enumerate(value):
            check(item, spec.spec, f"{path}[{i}]")
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise SchemaError(f"{path} must be a map, got {type(value).__name__}")
        if len(value) > spec.max_len:
            raise SchemaError(f"{path} has {len(value)} entries, more than {spec.max_len}")
        for key, item in value.items():
            check(item, spec.spec, f"{path}.{key}")
    elif isinstance(spec, Struct):
        if not isinstance(value, dict):
            raise SchemaError(f"{path} must be a map, got {type(value).__name__}")
        for key, sub in spec.required.items():
            if key not in value:
                raise SchemaError(f"{path}.{key} is missing")
            check(value[key], sub, f"{path}.{key}")
        for key, item in value.items():
            if key in spec.required:
                continue
            if key not in spec.optional:
                raise SchemaError(f"{path}.{key} is not a known field")
            check(item, spec.optional[key], f"{path}.{key}")
    else:
        raise TypeError(f"bad spec {spec!r}")
