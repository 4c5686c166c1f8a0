"""Detector backends behind one interface (``detectors.base.Detector``)."""
from __future__ import annotations

from detectors.base import Detector

NAMES = ("blazepose", "hmr2")


def create(name: str, **options) -> Detector:
    """Build the detector called ``name`` with its backend-specific options."""
    if name == "blazepose":
        from detectors.blazepose import BlazePoseDetector

        return BlazePoseDetector(**options)
    if name == "hmr2":
        from detectors.hmr2.detector import Hmr2Detector

        return Hmr2Detector(**options)
    raise ValueError(f"unknown detector {name!r} (choose from {', '.join(NAMES)})")
