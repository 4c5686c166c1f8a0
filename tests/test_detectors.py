"""The contract every registered detector keeps: its options reach it from any command line, and it
turns frames into valid detections. Runs over the registry, so a new detector is checked without a new test."""
import argparse

import cv2
import pytest

import detectors
import options
from bus.messages import detections, validate
from detectors.base import FrameImage
from options.groups import DECODE, TRACK, TRACKER
from outputs import table as outputs_table

from conftest import SHARED, VIDEO

# What a detector needs beyond its defaults to be built here (a model file that does not ship).
BUILD_WITH = {"hmr2": {"checkpoint": str(SHARED / "fixtures" / "hmr2" / "small_checkpoint.ckpt"),
                       "boxes": "blazepose"}}
NAMES = sorted(detectors.registered())


def parse(process: str, argv: list[str], *tables: options.Table) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    options.add_flags(parser, process, *tables)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def frames() -> list[FrameImage]:
    capture = cv2.VideoCapture(str(VIDEO))
    images = [capture.read()[1] for _ in range(2)]
    capture.release()
    return [FrameImage("contract", index, index * 1000 / 30, image) for index, image in enumerate(images)]


def test_every_option_is_declared_once():
    tables = (detectors.table(), DECODE, TRACK, TRACKER, outputs_table())
    flags = [option.flag for table in tables for option in table.options]
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize("name", NAMES)
def test_the_launcher_hands_a_worker_every_option_of_its_detector(name):
    """What launch.py parses, the worker it starts parses back the same (forwarding loses nothing)."""
    table = detectors.table()
    changed = {option.name: (not option.default if option.type is bool else option.choices[-1] if option.choices
                             else option.type(7) if isinstance(option.default, (int, float)) or option.type is float
                             else "7x7" if option.type is options.pixel_size_text else "x")
               for option in detectors.registered()[name].options}
    launched = parse(options.LAUNCH, options.argv("detect", {"detector": name, **changed}, table), table)
    worker = parse("detect", options.argv("detect", launched, table), table)
    assert vars(worker) == vars(launched) and worker.detector == name
    assert {key: getattr(worker, key) for key in changed} == changed


@pytest.mark.parametrize("name", NAMES)
def test_a_detector_built_from_its_flags_finds_valid_detections(name, frames):
    settings = vars(parse("detect", ["--detector", name], detectors.table()))
    detector = detectors.create(name, {**settings, **BUILD_WITH.get(name, {})})
    try:
        found = detector.detect(frames)
    finally:
        detector.close()
    assert detector.name == name
    assert len(found) == len(frames)
    assert any(found), "the runner of vid.mp4 is found in at least one of its first frames"
    for frame, people in zip(frames, found):
        validate(detections(frame.job, frame.index, frame.pts_ms, people))


def test_a_detector_gets_only_its_own_options():
    with pytest.raises(ValueError, match="unknown detector"):
        detectors.create("nobody", {})
    for name, entry in detectors.registered().items():
        others = {option.name for other in detectors.registered().values() if other is not entry
                  for option in other.options} - {option.name for option in entry.options}
        assert not others & {option.keyword for option in entry.options}, name
