"""The blackout harness (bench.blackout) on vid.mp4: frames blacked out before decoding, so the detector
restarts after each burst as in real footage; the runner keeps one identity and is never doubled."""
import numpy as np
import pytest

from bench import blackout
from bench.blazepose import two_runners_frames
from bench.clips import read_video
from bench.tracking import withheld_bursts

from conftest import VIDEO

pytestmark = pytest.mark.skipif(not VIDEO.exists(), reason=f"{VIDEO} not found (../shared/media)")


def test_the_runner_through_blackouts_keeps_one_identity_and_is_filled_better_than_held(tmp_path):
    images = read_video(VIDEO)
    reference, (result,) = blackout.blackout_scores(images, [7], tmp_path)
    scored = result.score
    blacked = withheld_bursts(len(images), seed=7)
    assert blacked.mean() > 0.3 and all(f.people for f in reference)
    assert scored.primary_switches == 0 and scored.duplicate_frames == 0 and scored.identity_swaps == 0
    # Seed 7, the harness's headline seed, is one of the three of 32 where filling is above half of
    # hold-last (0.56): its first burst blacks out frames 3-16, and the detector's re-acquired poses
    # after it are 17 px from the untouched run's (bench/RESULTS.md, Blackout). The tracker still
    # fills better than interpolating the detections across each burst.
    assert scored.fill_px <= 0.6 * scored.hold_px
    assert scored.fill_ratio < result.interpolation_ratio
    assert result.reacquired_px > 10


def test_two_runners_through_blackouts_keep_their_own_identities(tmp_path):
    images = two_runners_frames(VIDEO)
    reference, (result,) = blackout.blackout_scores(images, [0], tmp_path)
    scored = result.score
    assert all(len(f.people) == 2 for f in reference)
    assert scored.primary_switches == 0 and scored.duplicate_frames == 0 and scored.identity_swaps == 0
    assert scored.fill_px <= 0.5 * scored.hold_px


def test_scoring_counts_a_second_identity_and_a_doubled_person():
    from tests.track_helpers import person
    from tracking.types import TrackedFrame, TrackedPerson

    def published(index, *people):
        return TrackedFrame(index, 0.0, [TrackedPerson(track_id, state, 0.9, 0, detection, detection)
                                         for track_id, state, detection in people])

    runner = [person(300 + 5 * i, 400) for i in range(6)]
    reference = [published(i, (1, "observed", runner[i])) for i in range(6)]
    # blacked on 2-3; afterwards a new id, and the old one's ghost beside it on frame 4
    tracked = [published(0, (1, "observed", runner[0])), published(1, (1, "observed", runner[1])),
               published(2, (1, "predicted", runner[1])), published(3, (1, "predicted", runner[1])),
               published(4, (1, "predicted", runner[1]), (2, "observed", runner[4])),
               published(5, (2, "observed", runner[5]))]
    scored = blackout.score(reference, tracked, np.array([0, 0, 1, 1, 0, 0], dtype=bool))
    assert scored.primary_switches == 1 and scored.duplicate_frames == 1
    assert scored.fill_px == pytest.approx(scored.hold_px)  # the ghost held the last observation
