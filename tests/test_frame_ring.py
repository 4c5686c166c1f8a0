"""Frames in shared memory (bus.frame_ring): slots, references a worker refuses, clean-up by decode."""
import errno
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import zmq

from bus import codec, messages, sockets
from bus.frame_ring import FOLDER, BadReference, FrameReader, FrameRing, frame_bytes, remove_stale, slots_that_fit
from bus.metrics import StageMetrics
from bus.schema import SchemaError
from stages import decode
from stages.detect import receive_image

from clips import write_clip
from conftest import ROOT


def frame(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def codec_bytes(message: dict) -> int:
    return sum(len(memoryview(part)) for part in codec.encode(message))


def shm_message(reference: dict, index: int = 0, height: int = 48, width: int = 64) -> dict:
    return messages.validate(messages.image("j", index, 0.0, shm=reference, width=width, height=height))


@pytest.fixture
def ring(tmp_path):
    ring = FrameRing(2, frame_bytes(48, 64), tmp_path)
    yield ring
    ring.close()


def test_a_frame_put_in_a_slot_is_read_back_in_place_read_only(ring, tmp_path):
    pixels = frame(1)
    view = FrameReader(folder=tmp_path).pixels(shm_message(ring.put(pixels)))
    np.testing.assert_array_equal(view, pixels)
    assert not view.flags.writeable
    assert (tmp_path / ring.name).stat().st_mode & 0o777 == 0o600


def test_a_slot_is_written_again_only_after_its_release(ring, tmp_path):
    first, second = ring.put(frame(1)), ring.put(frame(2))
    assert ring.put(frame(3)) is None  # both slots held: the caller sends that frame raw
    ring.release(first["slot"])
    third = ring.put(frame(3))
    assert third["slot"] == first["slot"]
    reader = FrameReader(folder=tmp_path)
    np.testing.assert_array_equal(reader.pixels(shm_message(second)), frame(2))
    np.testing.assert_array_equal(reader.pixels(shm_message(third)), frame(3))


def test_a_frame_larger_than_a_slot_is_not_put(ring):
    assert ring.put(frame(1, height=49)) is None


@pytest.mark.parametrize("name", ["../posebus-1-0123456789abcdef", "posebus-1-0123456789abcdef/x",
                                  "other-1-0123456789abcdef", "posebus-1-0123", ""])
def test_a_name_that_is_not_a_rings_is_a_bad_message(name):
    with pytest.raises(SchemaError, match="frame ring"):
        shm_message({"name": name, "slot": 0, "slot_bytes": frame_bytes(48, 64)})


def test_an_image_with_two_payloads_is_a_bad_message(ring):
    message = messages.image("j", 0, 0.0, shm=ring.put(frame(1)), width=64, height=48)
    message["image"] = frame(1)
    with pytest.raises(SchemaError, match="exactly one"):
        messages.validate(message)


@pytest.mark.parametrize("change, reason", [
    (lambda ref: ref.update(slot=2), "not in"),  # past the end of a 2-slot file
    (lambda ref: ref.update(slot_bytes=frame_bytes(48, 64) + 1), "not in"),  # not the file's slot size
    (lambda ref: ref.update(slot_bytes=frame_bytes(48, 64) - 1), "does not fit"),
    (lambda ref: ref.update(name="posebus-1-0000000000000000"), "cannot open"),  # missing file
])
def test_a_reference_outside_the_ring_is_refused(ring, tmp_path, change, reason):
    reference = ring.put(frame(1))
    change(reference)
    with pytest.raises(BadReference, match=reason):
        FrameReader(folder=tmp_path).pixels(shm_message(reference))


def test_a_negative_size_is_refused(ring, tmp_path):
    with pytest.raises(BadReference, match="does not fit"):
        FrameReader(folder=tmp_path).pixels(shm_message(ring.put(frame(1)), height=-48))


@pytest.mark.parametrize("plant, reason", [
    (lambda path, ring: path.symlink_to(ring.path), "cannot open"),
    (lambda path, ring: os.mkfifo(path), "not a frame ring"),
    (lambda path, ring: path.mkdir(), "not a frame ring"),
])
def test_what_is_not_a_ring_file_is_refused(ring, tmp_path, plant, reason):
    reference = {**ring.put(frame(1)), "name": "posebus-1-0000000000000000"}
    plant(tmp_path / reference["name"], ring)
    with pytest.raises(BadReference, match=reason):
        FrameReader(folder=tmp_path).pixels(shm_message(reference))


def test_a_closed_ring_stays_readable_to_those_who_mapped_it_until_they_prune(tmp_path):
    ring = FrameRing(1, frame_bytes(48, 64), tmp_path)
    message = shm_message(ring.put(frame(1)))
    reader = FrameReader(folder=tmp_path)
    view = reader.pixels(message)
    ring.close()
    assert not (tmp_path / ring.name).exists()
    np.testing.assert_array_equal(view, frame(1))
    reader.prune()
    assert not reader.open
    with pytest.raises(BadReference, match="cannot open"):
        reader.pixels(message)


def test_rings_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"posebus-{gone.pid}-0123456789abcdef"
    stale.write_bytes(b"x")
    live = FrameRing(1, 16, tmp_path)
    assert remove_stale(tmp_path) == [stale.name]
    assert not stale.exists() and live.path.exists()
    live.close()


RECEIVER = """
import sys
import zmq
from bus import messages, sockets
from bus.frame_ring import FrameReader
from stages.detect import receive_image

ctx = zmq.Context()
frames, back = sockets.connect(ctx, "frames", sys.argv[1]), sockets.connect(ctx, "detections", sys.argv[2])
reader = FrameReader()
for _ in range(int(sys.argv[3])):
    message = receive_image(frames, reader)
    sockets.send(back, messages.image(message["job"], message["index"], 0.0, message["image"].copy()))
ctx.destroy(linger=2000)
"""


def test_frames_sent_through_shared_memory_arrive_pixel_identical_in_another_process(tmp_path):
    count = 5
    ends = [f"ipc://{tmp_path}/frames", f"ipc://{tmp_path}/back"]
    ctx = zmq.Context()
    frames, back = sockets.bind(ctx, "frames", ends[0]), sockets.bind(ctx, "detections", ends[1])
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, *ends, str(count)], cwd=ROOT)
    ring = FrameRing(count, frame_bytes(1088, 1920))
    try:
        for index in range(count):
            sent = messages.image("j", index, 0.0, shm=ring.put(frame(index, 1088, 1920)), width=1920, height=1088)
            assert codec_bytes(sent) < 1000  # only the reference travels
            sockets.send(frames, sent)
        for index in range(count):
            assert back.poll(30_000), "the receiver sent nothing back"
            echoed = sockets.parse(back.recv_multipart(), "frames")  # the image, echoed
            np.testing.assert_array_equal(echoed["image"], frame(echoed["index"], 1088, 1920))
        assert receiver.wait(30) == 0
    finally:
        receiver.kill()
        ring.close()
        ctx.destroy(linger=0)


def own_rings() -> list[str]:
    return [path.name for path in FOLDER.glob(f"posebus-{os.getpid()}-*")]


def decode_job(tmp_path, cancel_after: int | None = None) -> tuple[list[dict], dict]:
    """decode.run_job on an 8-frame clip in this process, with ``--shm``, fed acks by a thread standing
    in for a worker and the track stage (none, and a cancel, with ``cancel_after``): what the worker
    saw of each frame, and the job_end."""
    clip = write_clip(tmp_path / "clip.avi", [frame(i) for i in range(8)])
    ctx = zmq.Context()
    ends = {name: f"ipc://{tmp_path}/{name}" for name in ("frames", "events", "acks")}
    frames, events_in = sockets.bind(ctx, "frames", ends["frames"]), sockets.bind(ctx, "events", ends["events"])
    acks_out, acks_in = ctx.socket(zmq.PUSH), sockets.connect(ctx, "acks", ends["acks"])
    acks_out.bind(ends["acks"])
    metrics = StageMetrics("decode", "test")
    metrics.out = ctx.socket(zmq.PUB)
    seen: list[dict] = []

    def worker_and_track():
        pull, reader = sockets.connect(ctx, "frames", ends["frames"]), FrameReader()
        while len(seen) < 8 and pull.poll(1000):  # after a cancel, no more come
            message = receive_image(pull, reader)
            seen.append({"shm": "shm" in message, "shape": message["image"].shape, "rings": own_rings()})
            if cancel_after is None:
                sockets.send(acks_out, messages.ack("j", message["index"] + 1, []))
        pull.close()

    helper = threading.Thread(target=worker_and_track)
    helper.start()
    cancelled = (lambda job: "cancelled" if len(seen) >= cancel_after else None) if cancel_after else lambda job: None
    try:
        decode.run_job(messages.job_request("j", str(clip)), frames,
                       sockets.connect(ctx, "events", ends["events"]), None, False, logging.getLogger("posebus.test"),
                       acks=acks_in, max_in_flight=4, metrics=metrics, cancelled=cancelled, shm=True)
        helper.join(10)
        assert events_in.poll(1000) and sockets.receive(events_in, "events")["type"] == "job_start"
        assert events_in.poll(1000)
        end = sockets.receive(events_in, "events")
        assert end["type"] == "job_end"
        return seen, end
    finally:
        ctx.destroy(linger=0)


@pytest.mark.parametrize("cancel_after", [None, 3])
def test_decode_removes_its_ring_after_a_job_finished_or_cancelled(tmp_path, cancel_after):
    seen, job_end = decode_job(tmp_path, cancel_after)
    assert all(s["shm"] and s["shape"] == (48, 64, 3) for s in seen) and seen[0]["rings"] != []
    assert len(seen) == 8 if cancel_after is None else cancel_after <= len(seen) < 8
    assert job_end["status"] == ("ok" if cancel_after is None else "error")
    assert own_rings() == []


def test_without_room_in_shared_memory_decode_sends_raw_frames_and_says_so_once(tmp_path, monkeypatch, caplog):
    def full(slots, slot_bytes):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(decode, "FrameRing", full)
    seen, job_end = decode_job(tmp_path)
    assert [s["shm"] for s in seen] == [False] * 8 and job_end["status"] == "ok"
    assert all(s["shape"] == (48, 64, 3) for s in seen)
    assert caplog.text.count("shared_memory_unavailable") == 1 and "No space left" in caplog.text


def test_a_ring_takes_at_most_half_the_room_left():
    frame_1080p = frame_bytes(1088, 1920)
    assert slots_that_fit(32, frame_1080p, 24 * 2**30) == 32
    assert slots_that_fit(32, frame_1080p, 64 * 2**20) == 5  # Docker's default /dev/shm
    assert slots_that_fit(32, frame_1080p, 0) == 0


@pytest.mark.parametrize("room_in_slots, ring_slots", [(5, 2), (3, None)])
def test_a_small_shared_memory_gets_a_smaller_ring_or_none(tmp_path, monkeypatch, caplog, room_in_slots,
                                                           ring_slots):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(decode, "free_bytes", lambda: room_in_slots * frame_bytes(48, 64))
    seen, job_end = decode_job(tmp_path)
    assert len(seen) == 8 and job_end["status"] == "ok" and all(s["shape"] == (48, 64, 3) for s in seen)
    if ring_slots is None:  # room for one slot: not worth a ring
        assert not any(s["shm"] for s in seen) and "shared_memory_unavailable" in caplog.text
    else:
        assert seen[0]["shm"] and f"event=small_frame_ring job=j slots={ring_slots} wanted=4" in caplog.text
