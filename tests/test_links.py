"""Each link's message types live in its table entry (bus.sockets.LINKS): receiving checks them,
``bus.tap`` prints them, and only a message that is not one counts as malformed."""
import argparse
import logging
import subprocess
import sys
import threading

import pytest
import zmq

import options
from bus import codec, messages, sockets, tap
from options.groups import TRACK, TRACKER
from outputs import table as outputs_table
from stages.track.stage import TrackStage

from conftest import ROOT, free_port


def test_a_link_refuses_the_types_it_does_not_carry():
    ctx = zmq.Context()
    try:
        pull = sockets.bind(ctx, "events", "inproc://events")
        push = sockets.connect(ctx, "events", "inproc://events")
        sockets.send(push, messages.job_end("j", 0))
        assert sockets.receive(pull, "events")["type"] == "job_end"
        sockets.send(push, messages.progress("j", 1, 1, 0))
        with pytest.raises(sockets.MALFORMED):
            sockets.receive(pull, "events")
    finally:
        ctx.destroy(linger=0)


def test_tap_on_the_results_socket_prints_every_public_message(capsys):
    """It used to report every track_event as a bad message."""
    ctx = zmq.Context()
    public = [messages.job_start("j", "clip.mp4", 30.0, 64, 48, 1), messages.track_event("j", 0, "born", 1),
              messages.frame("j", 0, 0.0, []), messages.job_end("j", 1)]
    try:
        results = sockets.bind(ctx, "results", "tcp://127.0.0.1:0")  # the tap has a context of its own
        endpoint = results.getsockopt(zmq.LAST_ENDPOINT).decode()
        reader = threading.Thread(target=tap.main, args=([endpoint, "--count", str(len(public))],), daemon=True)
        reader.start()
        assert results.poll(10_000) and results.recv()[:1] == b"\x01"  # the tap has subscribed
        for message in public:
            sockets.send(results, message)
        reader.join(10)
    finally:
        ctx.destroy(linger=0)
    printed = capsys.readouterr().out
    assert "bad message" not in printed
    assert [line.split()[1] for line in printed.splitlines()] == [m["type"] for m in public]


def track_settings(tmp_path) -> dict:
    parser = argparse.ArgumentParser()
    options.add_flags(parser, "track", TRACK, TRACKER, outputs_table())
    return vars(parser.parse_args(["--job-log", str(tmp_path / "logs")]))


def test_detections_that_overflow_before_their_job_start_are_dropped_with_one_log_line(tmp_path, caplog):
    """It used to crash the stage (the log line named ``job.id`` of a job not yet known)."""
    ctx = zmq.Context()
    stage = TrackStage(sockets.bind(ctx, "results", "inproc://results"), None, track_settings(tmp_path),
                       logging.getLogger("posebus.test"), clock=None)
    try:
        with caplog.at_level(logging.ERROR):
            for index in range(stage.reorder.max_pending + 1):
                stage.on_detections(codec.decode(codec.encode(messages.detections("early", index, 0.0, []))))
        assert [r.getMessage() for r in caplog.records if "reorder_overflow" in r.getMessage()] == [
            caplog.records[-1].getMessage()]
        assert "job=early" in caplog.records[-1].getMessage()
    finally:
        stage.close()
        ctx.destroy(linger=0)


BUSY_WORKER = """
import sys, time
import zmq
from bus import sockets

ctx = zmq.Context()
decode = sockets.bind(ctx, "frames", sys.argv[1])
worker = sockets.connect(ctx, "frames", sys.argv[1])
time.sleep(0.3)
sent, start = 0, time.monotonic()
while time.monotonic() - start < 0.5:  # the worker is busy (an HMR 2.0 batch): it reads nothing, its pipe fills
    try:
        decode.send(b"x" * 2000, zmq.NOBLOCK)
        sent += 1
    except zmq.Again:
        time.sleep(0.01)
decode.close(linger=0)  # decode goes away (the pipeline stops)
time.sleep(2.5)  # the worker still busy
received = 0
while worker.poll(500):
    worker.recv()
    received += 1
print(sent, received)
ctx.destroy(linger=0)
"""


def test_a_busy_worker_on_tcp_survives_decode_going_away():
    """libzmq 4.3.5 aborted such a worker (``Assertion failed: !_io_error``) with ZMTP heartbeats on its end."""
    run = subprocess.run([sys.executable, "-c", BUSY_WORKER, f"tcp://127.0.0.1:{free_port()}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Assertion failed" not in run.stderr
    sent, received = map(int, run.stdout.split())
    assert 0 < received <= sent
