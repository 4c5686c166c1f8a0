"""Unpickling with an allow-list of globals.

A pickle can name any importable callable and have it called while loading
(``os.system`` included). The HMR 2.0 files (the Lightning checkpoint, the SMPL
model, the J19 regressor) only need a handful of data constructors, so each
reader names exactly those; anything else stops the load before it is imported.
"""
from __future__ import annotations

import pickle
from typing import Any, BinaryIO, ClassVar, Mapping


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the reader's allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """Subclasses set ``allowed``: (module, name) as written in the pickle -> the object to use."""

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {}
    what: ClassVar[str] = "this file"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(
                f"refusing to load {self.what}: it references the global {module}.{name}, "
                f"which is not on the allow-list of plain data types (a pickle can run any global it names)"
            ) from None


def load(file: BinaryIO, unpickler: type[RestrictedUnpickler], **kwargs: Any) -> Any:
    return unpickler(file, **kwargs).load()
