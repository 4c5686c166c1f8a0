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
    assert health["detectors"] == {"blazepose": {"workers": 2, "ready": 2}}
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
