"""HMR 2.0's options end to end through launch.py: --fov reaches every published camera and job_start's
intrinsics, --precision int8 runs, and raw carries the unsmoothed SMPL and mesh."""
import math

import cv2
import joblib
import numpy as np

from conftest import ROOT, VIDEO, Collector, free_port, launch

SMALL_CHECKPOINT = ROOT / ".." / "shared" / "fixtures" / "hmr2" / "small_checkpoint.ckpt"


def test_fov_precision_and_raw_through_the_pipeline(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(VIDEO))
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), capture.read()[1])
    capture.release()
    results = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(results)
    collector.start()
    run = launch(folder, "--results", results, "--history", f"tcp://127.0.0.1:{free_port()}", "--wait-subscribers",
                 "1", "--detector", "hmr2", "--checkpoint", SMALL_CHECKPOINT, "--mesh", "--fov", "60",
                 "--precision", "int8", "--min-box", "16x16", "--job", "fov", "--job-log", tmp_path / "logs",
                 "--phalp-pkl", tmp_path / "phalp", timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Assertion failed" not in run.stderr  # libzmq's, in a stage that shut down (bus.sockets)
    assert "Traceback" not in run.stderr
    sent = collector.result()
    start = next(m for m in sent if m["type"] == "job_start")
    focal = max(start["width"], start["height"]) / 2 / math.tan(math.radians(30))
    assert math.isclose(start["intrinsics"]["fx"], focal, rel_tol=1e-6)
    assert math.isclose(start["intrinsics"]["fy"], focal, rel_tol=1e-6)
    frames = [m for m in sent if m["type"] == "frame"]
    assert len(frames) == 8
    people = [p for m in frames for p in m["people"]]
    assert len(people) >= 6
    assert all(math.isclose(p["camera"]["focal_length"], focal, rel_tol=1e-6) for p in people)
    with_raw = [p for p in people if "raw" in p]
    assert with_raw and all({"smpl", "camera", "keypoints_3d_native", "vertices"} <= set(p["raw"]) for p in with_raw)
    for p in people:
        assert all(np.isfinite(p[key]).all() for key in ("keypoints_3d", "vertices"))
    (pkl,) = (tmp_path / "phalp").glob("*.pkl")
    observed_raw = {m["index"]: p["raw"]["camera"]["translation"] for m in frames for p in m["people"]
                    if p["state"] == "observed" and "raw" in p}
    for index, record in enumerate(joblib.load(pkl).values()):
        if index in observed_raw:
            np.testing.assert_allclose(record["camera"][0], observed_raw[index], rtol=1e-6)
