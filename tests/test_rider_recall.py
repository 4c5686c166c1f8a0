"""Issue 19's acceptance, end to end: the default CPU pipeline on the app's own snowboarding clips publishes
the rider as the primary person (observed or interpolated) on at least 95% of each clip's labelled frames,
under one track id, with no observed person off the rider (bench.recall scores exactly as the issue says)."""
import pytest

from bench.recall import CLIPS, SNOW, read_labels, run_pipeline, score_frames

pytestmark = pytest.mark.skipif(not (SNOW / "labels.txt").exists(), reason=f"{SNOW} not found (../shared/media)")


@pytest.mark.parametrize("clip", CLIPS)
def test_the_rider_is_the_primary_person_under_one_identity(clip, tmp_path):
    run = run_pipeline(SNOW / f"{clip}.mp4", [], tmp_path, clip)
    score = score_frames(run.frames, read_labels()[clip], clip)
    assert score.frames == len(run.frames) and score.labelled > 0
    assert len(score.primary) >= 0.95 * score.labelled, f"{clip}: rider not first on {score.missed}"
    assert len(score.identities) == 1, f"{clip}: the rider under {sorted(score.identities)}"
    assert not score.false_people, f"{clip}: observed people off the rider: {score.false_people}"
