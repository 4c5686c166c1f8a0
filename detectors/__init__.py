"""Detector backends behind one interface (``detectors.base.Detector``)."""
from __future__ import annotations

from detectors.base import Detector

NAMES = ("blazepose", "hmr2")


def create(name: str, **options) -> Detector:
    """Build the detector called ``name`` with its backend-specific options (``second_look``: BlazePose's
    misses, or HMR 2.0's BlazePose boxes', looked at again where the rider is expected: ``detectors.second_look``)."""
    if name == "blazepose":
        from detectors.blazepose import BlazePoseDetector

        second_look = options.pop("second_look", False)
        detector = BlazePoseDetector(**options)
        if second_look:
            from detectors.second_look import with_second_look

            return with_second_look(detector)
        return detector
    if name == "hmr2":
        from detectors.hmr2.detector import Hmr2Detector

        return Hmr2Detector(**options)
    raise ValueError(f"unknown detector {name!r} (choose from {', '.join(NAMES)})")
