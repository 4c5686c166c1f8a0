"""Motion models: what a track is predicted to do on frames nobody detected it."""
import tracemalloc

import numpy as np
import pytest

from bench.scenes import box_of, walking_pose
from pose.skeleton import JOINT_INDEX
from tracking.fields import RECALLED_FIELDS
from tracking.motion import ConstantVelocity, Hold, MotionMatching, body_shape
from tracking.tracker import Tracker

from track_helpers import frame, person, run


def walker(t: int) -> np.ndarray:
    """(J, 2) px: bench.scenes' walking pose (a 25-frame stride), 250 px tall, moving right 3 px a frame."""
    return np.array([300.0 + 3 * t, 400.0]) + 250 * walking_pose(0.25 * t)


def observations(poses: dict[int, np.ndarray]) -> list:
    return [(t, {"bbox": box_of(p), "keypoints_2d": p}) for t, p in sorted(poses.items())]


def shape_error(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean px distance between two poses, each centred on its joints' mean: the limbs, not where the body is."""
    return float(np.linalg.norm(body_shape(predicted) - body_shape(truth), axis=-1).mean())


@pytest.mark.parametrize("ahead", [2, 6, 12])
def test_limbs_replay_a_stride_seen_before(ahead):
    seen = observations({t: walker(t) for t in range(60)})  # over two strides
    index = 59 + ahead
    held = shape_error(Hold().predict(seen, index)["keypoints_2d"], walker(index))
    replayed = shape_error(MotionMatching().predict(seen, index)["keypoints_2d"], walker(index))
    assert held > 3  # the legs have moved on (px, averaged over every joint, most of which hardly move)
    assert replayed < 0.1 * held


def test_without_a_recurrence_the_body_model_stands():
    """An arm that rises steadily never repeats a pose: nothing to replay, the base prediction is returned as is."""
    wrist = JOINT_INDEX["left_wrist"]

    def raising(t):
        pose = walker(0)
        pose[wrist, 1] -= 4.0 * t
        return pose

    seen = observations({t: raising(t) for t in range(40)})
    for index in (41, 45):
        expected = ConstantVelocity().predict(seen, index)
        predicted = MotionMatching().predict(seen, index)
        assert predicted.keys() == expected.keys()
        assert all(np.array_equal(predicted[k], expected[k]) for k in expected)


def test_a_gap_in_the_history_is_not_matched_across():
    """Frames j whose continuation j + ahead was not observed are no match, even when j's pose fits best."""
    poses = {t: walker(t) for t in range(60) if not 30 <= t < 45}
    seen = observations(poses)
    predicted = MotionMatching().predict(seen, 66)["keypoints_2d"]
    assert np.isfinite(predicted).all()
    assert shape_error(predicted, walker(66)) < shape_error(Hold().predict(seen, 66)["keypoints_2d"], walker(66))


def test_a_predicted_box_moves_its_centre_and_keeps_its_size():
    """A pose-derived box narrows while a limb swings in; extrapolating that would shrink the person away."""
    boxes = [np.array([100.0 + 10 * t + 8 * t, 200.0, 300.0 - 16 * t, 600.0]) for t in range(5)]  # centre +10 px/frame
    seen = [(t, {"bbox": box}) for t, box in enumerate(boxes)]
    predicted = ConstantVelocity().predict(seen, 10)["bbox"]
    assert predicted[2:] == pytest.approx(boxes[-1][2:])
    centre = predicted[:2] + predicted[2:] / 2
    assert centre[0] > boxes[-1][0] + boxes[-1][2] / 2  # and it keeps going right


def test_a_track_keeps_meshes_only_for_its_working_window():
    """Motion matching remembers 150 observations, but of a mesh-carrying detector only the keypoints and box."""
    vertices = np.zeros((6890, 3), dtype=np.float32)

    def meshed(t):
        detection = person(300 + t, 400, rotation=np.array([0.0, 0.1, 0.0]))
        detection.extras["vertices"] = vertices + t
        return detection

    tracker = Tracker(lookahead=8)
    tracemalloc.start()
    try:
        for t in range(400):
            tracker.push(frame(t, meshed(t)))
            if t == 60:
                after_60 = tracemalloc.get_traced_memory()[0]
        after_400 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    one_mesh = 6890 * 3 * (8 + 4)  # its float64 field and float32 detection
    assert after_400 - after_60 < one_mesh  # ~100 more observations kept, without their meshes
    track = next(iter(tracker._tracks.values()))
    kept = list(track.observations)
    assert len(kept) == tracker.lookahead + tracker.motion.history + 1 + tracker.motion.recall
    assert all(o.detection is None and o.fields.keys() <= set(RECALLED_FIELDS) for o in kept[:tracker.motion.recall])
    assert all("vertices" in o.fields for o in kept[tracker.motion.recall:])


def test_predicted_walker_frames_follow_the_stride_through_the_tracker():
    """End to end in the tracker: a walker missed for 10 frames after three strides keeps walking its stride."""
    frames = [frame(t, *([] if 75 <= t < 85 else [_walker_detection(t)])) for t in range(90)]
    out = run(Tracker(lookahead=0, smoothing=False), frames)
    predicted = [f for f in out if f.people and f.people[0].state == "predicted"]
    assert [f.index for f in predicted] == list(range(75, 85))
    for f in predicted:
        held = shape_error(walker(74), walker(f.index))
        assert shape_error(f.people[0].detection.keypoints_2d[:, :2], walker(f.index)) < 0.3 * held + 1


def _walker_detection(t: int):
    detection = person(0, 0)
    points = walker(t)
    detection.keypoints_2d = np.c_[points, np.ones(len(points))].astype(np.float32)
    detection.bbox = box_of(points).astype(np.float32)
    return detection
