"""A job's options are honoured or refused at submit, never mislabelled; ``health`` says when the workers are ready.

Through a real ``launch.py serve`` and its control and results sockets.
"""
import pytest

from bus.client import Control

from conftest import VIDEO, run_job, serving


@pytest.fixture(scope="module")
def blazepose_server():
    with serving("--workers", "2") as (server, control_endpoint, results, _folder):
        control = Control(control_endpoint, timeout_ms=30_000)
        try:
            yield control, results
        finally:
            control.close()


def test_health_is_ready_once_every_worker_has_loaded_its_model(blazepose_server):
    control, _results = blazepose_server
    health = control.wait_until_ready(timeout_s=240)
    assert health["ready"] is True
    assert health["detectors"] == {"blazepose": {"workers": 2, "ready": 2, "remote": 0}}
    assert all(process["since_heartbeat_s"] is not None for process in health["processes"].values())


def test_a_detector_the_workers_do_not_run_is_refused_at_submit(blazepose_server):
    control, _results = blazepose_server
    with pytest.raises(RuntimeError) as refused:
        control.submit(str(VIDEO), job="wants-hmr2", detector="hmr2")
    assert "detector 'hmr2'" in str(refused.value) and "'blazepose'" in str(refused.value)
    assert "--detector hmr2" in str(refused.value)
    assert control.status("wants-hmr2") == {"ok": False, "error": "no job wants-hmr2"}  # nothing was queued


def test_a_detector_the_workers_run_is_served_and_labelled_so(blazepose_server):
    control, results = blazepose_server
    control.wait_until_ready(timeout_s=240)
    published = run_job(control, results, VIDEO, "asks-blazepose", detector="blazepose", max_frames=5)
    start, end = published[0], published[-1]
    assert start["type"] == "job_start" and start["detector"] == "blazepose"
    assert start["options"]["detector"] == "blazepose"
    assert end["type"] == "job_end" and end["status"] == "ok", end


SMALL_CHECKPOINT = VIDEO.parents[1] / "fixtures" / "hmr2" / "small_checkpoint.ckpt"


def test_a_pool_per_detector_kind_serves_each_job_with_the_detector_it_asks_for():
    with serving("--detectors", "blazepose,hmr2", "--checkpoint", str(SMALL_CHECKPOINT), "--mesh") as (
            _server, control_endpoint, results, _folder):
        control = Control(control_endpoint, timeout_ms=30_000)
        try:
            health = control.wait_until_ready(timeout_s=300)
            assert health["detectors"] == {"blazepose": {"workers": 1, "ready": 1, "remote": 0},
                                           "hmr2": {"workers": 1, "ready": 1, "remote": 0}}
            assert set(health["processes"]) == {"decode", "track", "detect-blazepose-0", "detect-hmr2-0"}
            by_hmr2 = run_job(control, results, VIDEO, "by-hmr2", detector="hmr2", max_frames=4)
            by_default = run_job(control, results, VIDEO, "by-default", max_frames=4)
        finally:
            control.close()
    for published, detector in ((by_hmr2, "hmr2"), (by_default, "blazepose")):
        start, frames, end = published[0], published[1:-1], published[-1]
        assert start["detector"] == start["options"]["detector"] == detector
        assert end["status"] == "ok" and end["frames"] == 4, end
        people = [person for frame in frames if frame["type"] == "frame" for person in frame["people"]]
        assert people, f"nobody found by {detector}"
        # Only HMR 2.0 gives SMPL and a mesh: the frames were detected by the pool the job asked for.
        assert all(("smpl" in person) == (detector == "hmr2") for person in people)
    assert "mesh_faces" in by_hmr2[0] and "mesh_faces" not in by_default[0]
