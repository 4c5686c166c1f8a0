"""The track stage in this process (no stage process, no launcher): resending, stalls, the order of jobs."""
import argparse
import logging
import threading
import time

import pytest
import zmq

import options
from bus import messages, sockets
from options.groups import TRACK, TRACKER
from outputs import table as outputs_table
from stages.track import delivery, sinks
from stages.track.process import replay
from stages.track.stage import TrackStage

FRAMES = 4


@pytest.fixture
def clock(monkeypatch):
    """Seconds to add to time.monotonic, as the stage sees it."""
    ahead = [0.0]
    real = time.monotonic
    monkeypatch.setattr(delivery.time, "monotonic", lambda: real() + ahead[0])
    return ahead


def track_stage(ctx: zmq.Context, folder, *flags: str, acks: zmq.Socket | None = None) -> TrackStage:
    """A track stage in this process, its job logs in ``folder``, results on inproc://results-<folder name>."""
    parser = argparse.ArgumentParser()
    options.add_flags(parser, "track", TRACK, TRACKER, outputs_table())
    settings = vars(parser.parse_args(["--job-log", str(folder / "logs"), "--stall-timeout", "60", *flags]))
    return TrackStage(sockets.bind(ctx, "results", f"inproc://results-{folder.name}"), None, settings,
                      logging.getLogger("posebus.test"), clock=None, acks=acks)


@pytest.fixture
def stage(tmp_path):
    ctx = zmq.Context()
    stage = track_stage(ctx, tmp_path, "--record", str(tmp_path / "recorded"),
                        acks=sockets.bind(ctx, "acks", "inproc://acks"))
    stage.decode = sockets.connect(ctx, "acks", "inproc://acks")  # decode's end, to read the acks
    yield stage
    stage.close()
    ctx.destroy(linger=0)


def acks(stage) -> list[dict]:
    got = []
    while stage.decode.poll(100):
        got.append(sockets.receive(stage.decode, "acks"))
    return got


def detected(*indices: int) -> list[dict]:
    return [messages.detections("j", i, i * 1000 / 30, []) for i in indices]


def published(stage) -> list[tuple[str, int | None]]:
    return [(m["type"], m.get("index", m.get("frames"))) for m in stage.job_logs.messages("j")]


def start(stage, *indices):
    stage.on_job_event(messages.job_start("j", "clip.mp4", 30.0, 64, 48, FRAMES))
    for message in detected(*indices):
        stage.on_detections(message)
    stage.pump()


def test_a_frame_missing_while_later_ones_come_is_asked_for_again_then_published_in_order(stage, clock):
    start(stage, 0, 2, 3)
    assert acks(stage) == [messages.ack("j", 1, [])]  # frame 0 is done
    stage.request_missing()
    assert acks(stage) == []  # missing for less than the resend wait
    clock[0] += delivery.RESEND_AFTER_MIN_S
    stage.request_missing()
    assert acks(stage) == [messages.ack("j", 1, [1])]
    stage.on_detections(detected(1)[0])
    stage.on_job_event(messages.job_end("j", FRAMES))
    stage.pump()
    assert published(stage) == [("job_start", None), *(("frame", i) for i in range(FRAMES)), ("job_end", FRAMES)]


def test_a_frame_that_never_comes_is_published_as_failed_after_the_last_try(stage, clock):
    start(stage, 0, 2, 3)
    stage.on_job_event(messages.job_end("j", FRAMES))
    for _ in range(delivery.MAX_DETECTION_TRIES + 1):
        clock[0] += delivery.RESEND_AFTER_MIN_S
        stage.request_missing()
    assert [ack["resend"] for ack in acks(stage) if ack["resend"]] == [[1]] * delivery.MAX_DETECTION_TRIES
    frames = [m for m in stage.job_logs.messages("j") if m["type"] == "frame"]
    assert [m["detection_failed"] for m in frames] == [False, True, False, False]
    assert stage.job_logs.messages("j")[-1]["status"] == "ok"


def test_a_recording_replays_a_frame_given_up_on_as_the_live_run_published_it(stage, clock, tmp_path):
    start(stage, 0, 2, 3)
    stage.on_job_event(messages.job_end("j", FRAMES))
    for _ in range(delivery.MAX_DETECTION_TRIES + 1):
        clock[0] += delivery.RESEND_AFTER_MIN_S
        stage.request_missing()
    live = stage.job_logs.messages("j")
    ctx = zmq.Context()
    try:
        again = track_stage(ctx, tmp_path / "replay")
        replay(again, tmp_path / "recorded" / "j")
        replayed = again.job_logs.messages("j")
        again.close()
    finally:
        ctx.destroy(linger=0)
    assert [m["detection_failed"] for m in live if m["type"] == "frame"] == [False, True, False, False]
    assert replayed == live


def test_a_detector_slow_to_give_its_first_frames_is_asked_again_but_no_frame_is_given_up(stage, clock):
    start(stage)  # HMR 2.0's first batch on a CPU: nothing for many resend waits
    for _ in range(delivery.MAX_DETECTION_TRIES + 2):
        clock[0] += delivery.RESEND_AFTER_MIN_S
        stage.request_missing()
    assert all(ack["resend"] == [0, 1, 2, 3] for ack in acks(stage) if ack["resend"])
    slow = messages.detections("j", 0, 0.0, [])
    slow["timestamps"] = {"decoded": 100.0, "detected": 112.0}
    stage.on_detections(slow)
    assert stage.delivery.receipt("j").detection_latency == pytest.approx(12.0)  # the first sample, not a tenth
    for message in detected(1, 2, 3):
        stage.on_detections(message)
    stage.on_job_event(messages.job_end("j", FRAMES))
    stage.pump()
    frames = [m for m in stage.job_logs.messages("j") if m["type"] == "frame"]
    assert [m["detection_failed"] for m in frames] == [False] * FRAMES


def test_detections_that_overtook_their_job_start_count_as_the_job_s_first(stage, clock):
    for message in detected(0, 2, 3):  # another link: they may come before the job_start
        stage.on_detections(message)
    start(stage)
    stage.on_job_event(messages.job_end("j", FRAMES))
    for _ in range(delivery.MAX_DETECTION_TRIES + 1):
        clock[0] += delivery.RESEND_AFTER_MIN_S
        stage.request_missing()
    frames = [m for m in stage.job_logs.messages("j") if m["type"] == "frame"]
    assert [m["detection_failed"] for m in frames] == [False, True, False, False]  # frame 1 given up on, not waited for


def test_a_job_that_nothing_moves_ends_with_an_error_after_the_stall_timeout(stage, clock):
    start(stage, 0)
    clock[0] += 59
    stage.fail_stalled()
    assert published(stage) == [("job_start", None)]  # frame 0 is held for the look-ahead
    clock[0] += 2
    stage.fail_stalled()
    assert published(stage) == [("job_start", None), ("frame", 0), ("job_end", 1)]
    end = stage.job_logs.messages("j")[-1]
    assert end["frames"] == 1 and end["error"].startswith("stalled: no progress")
    assert not stage.jobs


def test_a_job_stalled_before_its_first_frame_publishes_its_job_end_alone(stage, clock):
    start(stage)
    clock[0] += 61
    stage.fail_stalled()
    assert published(stage) == [("job_end", 0)]
    assert stage.job_logs.messages("j")[0]["status"] == "error"


def test_jobs_side_by_side_publish_each_in_order_and_one_stalled_or_missing_a_frame_holds_up_no_other(stage, clock):
    for job in ("a", "b", "stuck"):
        stage.on_job_event(messages.job_start(job, "clip.mp4", 30.0, 64, 48, FRAMES))
    for index in (0, 2, 3, 1):  # interleaved as the workers finish them; b misses frame 1 for now
        for job in ("a", "b"):
            if (job, index) != ("b", 1):
                stage.on_detections(messages.detections(job, index, index * 1000 / 30, []))
        stage.pump()
    for job in ("a", "b", "stuck"):
        stage.on_job_event(messages.job_end(job, FRAMES))
    stage.pump()
    kinds = {job: [(m["type"], m.get("index")) for m in stage.job_logs.messages(job)] for job in ("a", "b")}
    assert kinds["a"] == [("job_start", None), *(("frame", i) for i in range(FRAMES)), ("job_end", None)]
    assert kinds["b"] == [("job_start", None)]  # waits for its frame 1 (frame 0 held for the look-ahead), alone
    clock[0] += delivery.RESEND_AFTER_MIN_S
    stage.request_missing()
    assert [(ack["job"], ack["resend"]) for ack in acks(stage) if ack["resend"]] == [("b", [1]),
                                                                                     ("stuck", [0, 1, 2, 3])]
    stage.on_detections(messages.detections("b", 1, 33.3, []))
    clock[0] += 59  # only "stuck" has had nothing for the stall timeout
    stage.pump()
    stage.fail_stalled()
    assert stage.job_logs.messages("b")[-1]["type"] == "job_end" and stage.job_logs.messages("b")[-1]["status"] == "ok"
    assert stage.job_logs.messages("stuck")[-1]["error"].startswith("stalled: no progress")
    assert not stage.jobs


def test_job_end_waits_for_the_files_lists_them_and_is_published_once(tmp_path, monkeypatch):
    release = threading.Event()

    def write_files(settings, job, start, end, results, log):  # the files, held back until released
        release.wait(30)
        return {"report": str(tmp_path / "j.html")}, {"overlay": "OSError: disk full"}

    monkeypatch.setattr(sinks, "write_files", write_files)
    parser = argparse.ArgumentParser()
    options.add_flags(parser, "track", TRACK, TRACKER, outputs_table())
    settings = vars(parser.parse_args(["--job-log", str(tmp_path / "logs"), "--report", str(tmp_path)]))
    ctx = zmq.Context()
    stage = TrackStage(sockets.bind(ctx, "results", "inproc://results"), None, settings,
                       logging.getLogger("posebus.test"), clock=None)
    try:
        start(stage, *range(FRAMES))
        stage.on_job_event(messages.job_end("j", FRAMES))
        stage.pump()
        assert published(stage)[-1] == ("frame", FRAMES - 1)  # every frame out, job_end waiting for the files
        stage.on_job_event(messages.job_end("j", 0, "stage stopped: decode"))  # a late end: not a second job
        stage.pump()
        release.set()
        stage.files.shutdown()
        stage.pump()
        ends = [m for m in stage.job_logs.messages("j") if m["type"] == "job_end"]
        assert [(end["status"], end["outputs"], end["output_errors"]) for end in ends] == [
            ("ok", {"report": str(tmp_path / "j.html")}, {"overlay": "OSError: disk full"})]
        assert stage.jobs == {} and stage.ending == []
    finally:
        release.set()
        stage.close()
        ctx.destroy(linger=0)
