"""Detector backends behind one interface (``detectors.base.Detector``)."""
from __future__ import annotations

from detectors.base import Detector

NAMES = ("blazepose", "hmr2")


def create(name: str, second_look: bool = False, **options) -> Detector:
    """Build the detector called ``name`` with its backend-specific options; ``second_look``: BlazePose's
    misses get a second look where the rider is expected (``detectors.second_look``)."""
    if name == "blazepose":
        from detectors.blazepose import BlazePoseDetector

        detector = BlazePoseDetector(**options)
        if second_look:
            from detectors.blazepose import PoseFinder
            from detectors.second_look import SecondLook, SecondLookDetector

            # Where the rider is expected, a weak person detection is worth a look: the pose still has to be
            # plausible, inside the crop, and of the expected size at the expected place.
            finder = PoseFinder(detector.model, num_poses=2, min_confidence=0.2)
            return SecondLookDetector(detector, SecondLook(finder, focal=detector.focal))
        return detector
    if name == "hmr2":
        from detectors.hmr2.detector import Hmr2Detector

        return Hmr2Detector(**options)
    raise ValueError(f"unknown detector {name!r} (choose from {', '.join(NAMES)})")
