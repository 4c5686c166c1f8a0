"""With smoothing on, an observed person's ``raw`` keeps every value the model gave, and the PHALP export
writes those for observed frames (as PHALP writes what the model gave for a detected person)."""
import joblib
import numpy as np

from bench.scenes import HEIGHT, WIDTH
from bus.messages import frame as frame_message, job_start, person, validate
from outputs.phalp import write_phalp
from pose.camera import default_focal, intrinsics
from tests.track_helpers import frame, person as make_person, run
from tracking.tracker import Tracker

RNG = np.random.default_rng(5)


def jittered(index: int):
    """A walking person whose SMPL pose, camera and native keypoints jitter frame to frame (so smoothing moves them)."""
    d = make_person(400 + 6 * index + RNG.normal(0, 4), 360 + RNG.normal(0, 4), rotation=RNG.normal(0, 0.2, 3))
    d.extras["keypoints_3d_native"] = RNG.normal(0, 0.3, (44, 3)).astype(np.float32)
    d.extras["vertices"] = RNG.normal(0, 0.3, (6890, 3)).astype(np.float32)
    d.extras["appearance"] = RNG.normal(0, 1, 64).astype(np.float32)
    return d


def test_raw_keeps_every_unsmoothed_output_and_the_phalp_export_writes_it(tmp_path):
    detections = [jittered(i) for i in range(12)]
    tracked = run(Tracker(lookahead=0, n_init=1, smoothing=True), [frame(i, d) for i, d in enumerate(detections)])
    messages = [job_start("j", "clip.mp4", 30.0, WIDTH, HEIGHT, 12)]
    K = intrinsics(WIDTH, HEIGHT)
    messages[0]["intrinsics"] = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}
    smoothed_somewhere, with_raw = False, 0
    for tracked_frame in tracked:
        people = [person(p.track_id, p.state, p.confidence, p.frames_since_seen, p.detection, p.raw)
                  for p in tracked_frame.people]
        message = frame_message("j", tracked_frame.index, tracked_frame.pts_ms, people)
        validate(message)
        messages.append(message)
        observed = detections[tracked_frame.index]
        (published,) = people
        assert published["state"] == "observed"
        if "raw" not in published:  # published unsmoothed (nothing to smooth yet)
            continue
        raw, with_raw = published["raw"], with_raw + 1
        for key in ("global_orient", "body_pose", "betas"):
            np.testing.assert_array_equal(raw["smpl"][key], observed.extras["smpl"][key])
        np.testing.assert_array_equal(raw["camera"]["translation"], observed.extras["camera"]["translation"])
        np.testing.assert_array_equal(raw["keypoints_3d_native"], observed.extras["keypoints_3d_native"])
        np.testing.assert_array_equal(raw["vertices"], observed.extras["vertices"])
        assert "appearance" not in raw
        smoothed_somewhere |= not np.array_equal(published["camera"]["translation"], raw["camera"]["translation"])
    assert smoothed_somewhere, "smoothing moved the published camera on some frame"
    assert with_raw >= 6

    path = write_phalp(messages, tmp_path / "phalp.pkl")
    results = list(joblib.load(path).values())
    assert default_focal(WIDTH, HEIGHT) == messages[0]["intrinsics"]["fx"]
    for record, tracked_frame in zip(results, tracked):
        observed = detections[tracked_frame.index]
        np.testing.assert_allclose(record["camera"][0], observed.extras["camera"]["translation"], rtol=1e-6)
        np.testing.assert_array_equal(record["smpl"][0]["body_pose"], observed.extras["smpl"]["body_pose"])
        np.testing.assert_array_equal(record["3d_joints"][0][:44], observed.extras["keypoints_3d_native"])
        np.testing.assert_array_equal(record["bbox"][0], observed.bbox)
