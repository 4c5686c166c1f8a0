"""The recall harness scores results files the way issue 19 defines found, primary, identities and false people."""
import cv2
import numpy as np
import pytest

from bench.recall import Box, draw_misses, matches_rider, parse_labels, score_frames, score_overlay
from tests.clips import write_clip

LABELS = parse_labels("""
# clip frame x0 y0 x1 y1
clip 0 100 100 200 300
clip 6 100 100 200 300
clip 12 none
clip 18 skip
clip 24 300 100 400 300
""".splitlines())["clip"]


def person(track_id, state, x, y, w, h):
    return {"track_id": track_id, "state": state, "bbox": [x, y, w, h]}


def frame(index, *people):
    return {"type": "frame", "index": index, "people": list(people)}


def test_labels_keep_boxes_and_none_and_leave_out_skip():
    assert LABELS == {0: Box(100, 100, 200, 300), 6: Box(100, 100, 200, 300), 12: None,
                      24: Box(300, 100, 400, 300)}
    with pytest.raises(ValueError, match="line 1"):
        parse_labels(["clip 0 1 2 3"])


def test_a_match_has_its_centre_in_the_grown_box_and_a_similar_height():
    rider = Box(100, 100, 200, 300)  # 100 x 200: grown by 20% it spans x 80-220, y 60-340
    assert matches_rider([60, 100, 100, 200], rider)  # centre x 110
    assert matches_rider([165, 140, 100, 200], rider)  # centre x 215: inside the grown box
    assert not matches_rider([180, 100, 100, 200], rider)  # centre x 230
    assert not matches_rider([130, 180, 40, 70], rider)  # 70 px tall: under 0.4 x 200
    assert not matches_rider([0, 0, 300, 510], rider)  # 510 px tall: over 2.5 x 200
    assert matches_rider([100, 150, 100, 81], rider)


def test_found_primary_identities_and_false_people():
    rider = (110, 110, 80, 180)
    frames = [
        {"type": "job_start"},
        frame(0, person(1, "observed", *rider)),  # found, primary
        frame(1, person(9, "observed", 500, 0, 50, 50)),  # unlabelled frame: not scored
        frame(6, person(2, "observed", 0, 0, 40, 80), person(1, "interpolated", *rider)),  # found, not primary
        frame(12, person(2, "observed", 0, 0, 40, 80)),  # rider not visible: a false person
        frame(18, person(2, "observed", 0, 0, 40, 80)),  # skip: not scored
        frame(24, person(3, "predicted", 310, 110, 80, 180), person(4, "observed", 310, 110, 80, 180)),
    ]
    score = score_frames(frames, LABELS, "clip")
    assert score.labelled == 3 and score.frames == 6
    assert score.found == [0, 6, 24] and score.primary == [0] and score.missed == []
    assert score.identities == {1, 4}  # a predicted ghost on the rider is not the rider found
    assert score.false_people == [(6, 2), (12, 2)] and score.false_tracks == {2}


def test_a_predicted_ghost_or_a_missing_frame_is_a_miss():
    frames = [frame(0, person(1, "predicted", 110, 110, 80, 180)), frame(6),
              frame(24, person(1, "held", 310, 110, 80, 180))]
    score = score_frames(frames[:2], LABELS, "clip")
    assert score.found == [] and score.missed == [0, 6, 24] and score.labelled == 3
    assert score_frames(frames, LABELS).found == []


def test_an_overlay_is_found_where_its_pink_mesh_covers_the_rider_box(tmp_path):
    images = []
    for index in range(7):
        image = np.full((81, 144, 3), 128, np.uint8)
        if index == 0:  # the mesh on the rider (box 10-20 x 10-30 at 640 x 360 -> 2.25 x 2.25 scaled in a 1440 x 810)
            cv2.rectangle(image, (3, 3), (6, 6), (180, 40, 230), -1)
        images.append(image)
    labels = {0: Box(10, 10, 40, 40), 6: Box(10, 10, 40, 40)}
    big = [cv2.resize(image, (1440, 810), interpolation=cv2.INTER_NEAREST) for image in images]
    score = score_overlay(write_clip(tmp_path / "overlay.avi", big), labels, "clip")
    assert score.labelled == 2 and score.found == [0] and score.mesh_frames == 1 and score.frames == 7


def test_missed_frames_are_drawn_around_the_rider_with_what_was_published(tmp_path):
    images = [np.full((360, 640, 3), 30, np.uint8) for _ in range(25)]
    video = write_clip(tmp_path / "clip.avi", images)
    frames = [frame(0, person(1, "observed", 110, 110, 80, 180)), frame(6, person(2, "observed", 400, 10, 20, 40)),
              frame(24, person(1, "predicted", 310, 110, 80, 180))]
    score = score_frames(frames, LABELS, "clip")
    written = draw_misses(video, frames, score, LABELS, tmp_path / "misses")
    assert [p.name for p in written] == ["clip_0006.png", "clip_0024.png"]  # frame 0 found; 12 has no rider
    crop = cv2.imread(str(written[1]))
    green = (crop[..., 1] > 200) & (crop[..., 0] < 80) & (crop[..., 2] < 80)
    grey = (np.abs(crop.astype(int) - 128) < 30).all(axis=2)
    assert green.sum() > 1000 and grey.sum() > 1000  # the rider's box and the predicted person's around it
