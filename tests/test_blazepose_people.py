"""Several people on a CPU: two runners side by side (vid.mp4's runner beside itself two seconds later)."""
import numpy as np
import pytest

from clips import two_runners
from conftest import VIDEO, Collector, launch

FRAMES = 90


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return two_runners(VIDEO, tmp_path_factory.mktemp("people") / "two_runners.avi", frames=FRAMES)


def side(person, width=1200):
    x, _, w, _ = person["bbox"]
    return "left" if x + w / 2 < width / 2 else "right"


def test_both_runners_are_published_with_distinct_stable_track_ids(clip, endpoint):
    collector = Collector(endpoint)
    collector.start()
    result = launch(clip, "--results", endpoint, "--wait-subscribers", "1")
    assert result.returncode == 0, result.stderr
    frames = [m for m in collector.result() if m["type"] == "frame"]
    assert [f["index"] for f in frames] == list(range(FRAMES))

    ids = {"left": set(), "right": set()}
    both_observed = 0
    for frame in frames:
        observed = [p for p in frame["people"] if p["state"] == "observed"]
        both_observed += len({side(p) for p in observed}) == 2
        for person in frame["people"]:
            ids[side(person)].add(person["track_id"])
    assert both_observed >= 0.95 * FRAMES
    assert len(ids["left"]) == len(ids["right"]) == 1, ids  # one identity each, for the whole clip
    assert ids["left"] != ids["right"]
    first = {frame["people"][0]["track_id"] for frame in frames if frame["people"]}
    assert len(first) == 1  # the primary subject keeps its place at the front
    for frame in frames:
        for person in frame["people"]:
            assert np.isfinite(person["keypoints_3d"][:17]).all()
            assert (person["keypoints_3d"][:17, 2] > 0).all()  # in front of the camera


def test_a_person_walking_in_is_followed_from_the_next_census(clip):
    """The video-mode landmarker follows as many people as the last census counted: one who appears
    later is found at the next census (every ``census_every`` frames), and followed from then on."""
    import cv2

    from detectors.base import FrameImage
    from detectors.blazepose import BlazePoseDetector

    capture = cv2.VideoCapture(str(clip))
    images = [capture.read()[1] for _ in range(40)]
    for image in images[:15]:
        image[:, image.shape[1] // 2:] = 0  # the second runner is not there yet
    detector = BlazePoseDetector(mode="video", census_every=10)
    counts = [len(detector.detect([FrameImage("j", i, i * 1000 / 30, image)])[0]) for i, image in enumerate(images)]
    detector.close()
    assert counts[:15] == [1] * 15
    assert counts[20:] == [2] * 20  # the census at frame 20 found the newcomer
