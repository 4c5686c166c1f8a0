import joblib
import numpy as np

from bus import messages
from outputs.phalp import box_rle, crop_camera, expand_to_aspect, write_phalp, write_phalp_pkl
from tests.test_outputs import standing_person, synthetic_job
from tests.track_helpers import frame, person, run
from tracking.tracker import Tracker

PER_PERSON = {"tid", "bbox", "tracked_time", "center", "scale", "size", "img_path", "img_name", "class_name", "conf",
              "annotations", "extra_data", "smpl", "camera", "camera_bbox", "3d_joints", "2d_joints", "mask"}
FRAME_KEYS = {"time", "shot", "frame_path", "tracked_ids", "tracked_bbox"} | PER_PERSON


def decode_rle(rle: dict) -> np.ndarray:
    """Test oracle: pycocotools' rleFrString + rleDecode, column-major."""
    runs, counts, p = [], rle["counts"], 0
    while p < len(counts):
        value, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            value |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                value |= -1 << 5 * k
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
    height, width = rle["size"]
    flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)
    return flat.reshape(width, height).T


def test_box_rle_decodes_to_the_box():
    mask = decode_rle(box_rle(np.array([10.0, 5.0, 30.0, 20.0]), 64, 48))
    expected = np.zeros((48, 64), bool)
    expected[5:25, 10:40] = True
    assert (mask == expected).all()


def test_crop_camera_inverts_hmr2_cam_crop_to_full():
    box, focal, width, height = expand_to_aspect(np.array([700.0, 200.0, 300.0, 600.0])), 37500.0, 1920, 1080
    s, tx, ty = crop_camera(np.array([0.3, -0.2, 60.0]), box, focal, width, height)
    side, cx, cy = box[2:].max(), box[0] + box[2] / 2, box[1] + box[3] / 2
    bs = side * s  # hmr2 cam_crop_to_full
    assert np.allclose([2 * (cx - width / 2) / bs + tx, 2 * (cy - height / 2) / bs + ty, 2 * focal / bs],
                       [0.3, -0.2, 60.0])


def test_export_loads_with_joblib_and_has_phalp_keys_and_shapes(tmp_path):
    rotation = np.array([0.1, 0.2, 0.3])
    frames = [frame(i, *([person(300 + 5 * i, 400, rotation=rotation)] if i != 4 else []),
                    *([person(900, 380, height=250)] if i < 6 else [])) for i in range(10)]
    tracked = run(Tracker(lookahead=4), frames)
    path = write_phalp_pkl(tmp_path / "demo_vid.pkl", tracked, 1280, 720)
    results = joblib.load(path)
    assert list(results) == [f"img/{i + 1:06d}.jpg" for i in range(10)]
    for time, (name, record) in enumerate(results.items()):
        assert set(record) == FRAME_KEYS and record["time"] == time and record["frame_path"] == name
        n = len(record["tid"])
        assert all(len(record[key]) == n for key in PER_PERSON)
        assert set(record["tracked_ids"]) <= set(record["tid"])
        assert len(record["tracked_bbox"]) == len(record["tracked_ids"])
        for i in range(n):
            assert record["bbox"][i].shape == (4,) and record["center"][i].shape == (2,)
            assert record["camera"][i].shape == (3,) and record["camera_bbox"][i].shape == (3,)
            assert record["3d_joints"][i].shape == (45, 3) and record["2d_joints"][i].shape == (90,)
            assert record["size"][i] == [720, 1280] and isinstance(record["scale"][i], float)
            assert record["mask"][i][0]["size"] == [720, 1280]
    rider = results["img/000005.jpg"]
    assert rider["tracked_time"][0] == -1 and rider["extra_data"][0]["state"] == "interpolated"
    smpl = rider["smpl"][0]
    assert smpl["global_orient"].shape == (1, 3, 3) and smpl["body_pose"].shape == (23, 3, 3)
    assert smpl["betas"].shape == (10,)
    predicted = results["img/000008.jpg"]
    assert predicted["tracked_time"][1] > 0 and 2 not in predicted["tracked_ids"]
    assert predicted["smpl"][1] is None  # a detector without SMPL: None, not a made-up body
    # the projected root (joint 44) lies inside the box
    x, y = rider["2d_joints"][0].reshape(45, 2)[44] * 1280 - (0, (1280 - 720) // 2)
    bx, by, bw, bh = rider["bbox"][0]
    assert bx <= x <= bx + bw and by <= y <= by + bh


def test_frames_before_the_first_person_hold_it_flagged(tmp_path):
    job = synthetic_job([[], [standing_person()], [standing_person()]])
    results = list(joblib.load(write_phalp(job, tmp_path / "out.pkl")).values())
    assert [r["tid"] for r in results] == [[1], [1], [1]]
    assert [r["extra_data"][0] for r in results] == [
        {"state": "held", "frames_since_seen": 1, "backfilled": True},
        {"state": "observed", "frames_since_seen": 0, "backfilled": False},
        {"state": "observed", "frames_since_seen": 0, "backfilled": False}]
    assert results[0]["tracked_ids"] == [] and results[0]["conf"] == [0.9 * 0.9]
    assert messages.validate(job[1])["people"] == []  # the published message is untouched
