import numpy as np

from bench.tracking import step_lag
from tests.track_helpers import frame, person, run
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
