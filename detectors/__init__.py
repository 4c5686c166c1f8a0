"""Detector backends behind one interface (``detectors.base.Detector``)."""
from __future__ import annotations

from detectors.base import Detector

NAMES = ("blazepose",)


def create(name: str, **options) -> Detector:
    """Build the detector called ``name`` with its backend-specific options."""
    if name == "blazepose":
        from detectors.blazepose import BlazePoseDetector

        return BlazePoseDetector(**options)
    raise ValueError(f"unknown detector {name!r} (choose from {', '.join(NAMES)})")
