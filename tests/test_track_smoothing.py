import numpy as np

from bench.tracking import step_lag
from pose.rotations import exp_map
from tests.track_helpers import frame, person, run
from tracking.smoothing import OneEuroFilter, smooth_together
from tracking.tracker import Tracker


def test_step_lag_is_at_most_two_frames_for_real_motions():
    assert step_lag("keypoints_2d", 0.05 * 400) <= 2.0  # 5% of the body height
    assert step_lag("keypoints_3d", 0.05) <= 2.0  # 5 cm


def test_smoothing_reduces_jitter_of_a_still_person():
    rng = np.random.default_rng(1)
    frames = [frame(i, person(500 + rng.normal(0, 4), 400 + rng.normal(0, 4))) for i in range(60)]

    def acceleration(out):
        x = np.stack([f.people[0].detection.keypoints_2d[:, :2] for f in out[5:]]).astype(float)
        return np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean()

    raw = acceleration(run(Tracker(lookahead=0, n_init=1, smoothing=False), frames))
    smooth = acceleration(run(Tracker(lookahead=0, n_init=1), frames))
    assert smooth < 0.5 * raw


def random_fields(rng, size: float) -> dict:
    """One track's Fields with every kind the filter handles; a joint is sometimes missing."""
    keypoints_2d = rng.normal(500, size, (25, 2))
    keypoints_3d = rng.normal(0, 0.01 * size, (25, 3)) + [0, 0, 4]
    if rng.random() < 0.3:
        keypoints_2d[rng.integers(25)] = np.nan
        keypoints_3d[rng.integers(11, 13)] = np.nan  # a hip: the root falls back to the other joints
    return {"bbox": np.array([400, 300, 200, 400]) + rng.normal(0, size, 4), "keypoints_2d": keypoints_2d,
            "keypoints_3d": keypoints_3d, "translation": rng.normal(0, 0.01 * size, 3) + [0, 0, 4],
            "global_orient": exp_map(rng.normal(0, 0.3, (1, 3))), "body_pose": exp_map(rng.normal(0, 0.3, (23, 3))),
            "betas": rng.normal(0, 1, 10)}


def test_tracks_filtered_together_get_what_each_track_filtered_alone_gets():
    rng = np.random.default_rng(3)
    together, alone = [OneEuroFilter() for _ in range(6)], [OneEuroFilter() for _ in range(6)]
    for _ in range(30):  # tracks come and go, each with its own time step
        present = [t for t in range(6) if rng.random() < 0.7]
        fields = [random_fields(rng, size=float(rng.uniform(1, 20))) for _ in present]
        dts = [float(rng.uniform(0.02, 0.05)) for _ in present]
        smoothed = smooth_together([together[t] for t in present], fields, dts)
        for t, values, dt, result in zip(present, fields, dts, smoothed):
            expected = alone[t](values, dt)
            assert result.keys() == expected.keys()
            assert all(np.array_equal(result[name], expected[name], equal_nan=True) for name in expected)
