"""HMR 2.0 on a CPU batches crops across frames: one forward for the people of several frames (and jobs),
and a detect worker waits briefly for frames to fill its batch."""
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from bus import messages, sockets
from bus.frame_ring import FrameReader
from detectors.base import FrameImage
from detectors.hmr2.detector import Hmr2Detector, PersonBoxes
from stages.detect import receive_batch

CHECKPOINT = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "hmr2" / "small_checkpoint.ckpt"


class TwoPeople:
    def __call__(self, frames):
        return [PersonBoxes(np.float32([[100, 100, 400, 700], [900, 200, 1200, 900]]), np.float32([0.9, 0.8]))
                for _ in frames]

    def close(self):
        pass


def counting_forwards(detector):
    sizes = []
    forward = detector.model.forward

    def counted(img):
        sizes.append(len(img))
        return forward(img)

    detector.model.forward = counted
    return sizes


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(2)
    return [FrameImage(job, i, i * 33.3, rng.integers(0, 255, (720, 1280, 3), np.uint8))
            for job in ("a", "b") for i in range(3)]


def test_one_forward_takes_the_crops_of_every_frame(frames):
    detector = Hmr2Detector(CHECKPOINT, box_source=TwoPeople(), batch_size=16, precision="int8")
    sizes = counting_forwards(detector)
    found = detector.detect(frames)
    assert sizes == [12] and [len(people) for people in found] == [2] * 6
    detector.batch_size = 5
    sizes.clear()
    detector.detect(frames)
    assert sizes == [5, 5, 2]
    assert detector.batch_fill_ms > 0  # a CPU worker waits a little to fill its batches


def test_prepare_run_finish_is_detect_for_a_worker_that_gathers_crops(frames):
    """A worker loop may gather the frames of several jobs, run one forward, and hand each frame its rows."""
    detector = Hmr2Detector(CHECKPOINT, box_source=TwoPeople())
    whole = detector.detect(frames)
    prepared = detector.prepare(frames[:2]) + detector.prepare(frames[2:])  # gathered in two calls
    outputs = detector.run(np.concatenate([p.crops.images for p in prepared]))
    start = 0
    for frame, expected in zip(prepared, whole):
        rows = {key: value[start:start + 2] for key, value in outputs.items()}
        start += 2
        for a, b in zip(detector.finish(frame, rows), expected):
            np.testing.assert_array_equal(a.keypoints_3d, b.keypoints_3d)
            np.testing.assert_array_equal(a.bbox, b.bbox)


def image_message(index: int) -> dict:
    return {"type": "image", "schema": messages.SCHEMA, "job": "j", "index": index, "pts_ms": 0.0, "width": 4,
            "height": 4, "image": np.zeros((4, 4, 3), np.uint8)}


def test_a_worker_waits_for_frames_to_fill_its_batch():
    ctx = zmq.Context()
    endpoint = f"inproc://frames-{id(ctx)}"
    sender = ctx.socket(zmq.PUSH)
    sender.bind(endpoint)
    receiver = ctx.socket(zmq.PULL)
    receiver.connect(endpoint)

    def trickle(count):
        for index in range(count):
            sockets.send(sender, image_message(index))
            time.sleep(0.05)

    try:
        for fill_ms, expected in ((3000, 4), (0, 1)):
            thread = threading.Thread(target=trickle, args=(4,))
            thread.start()
            batch = receive_batch(receiver, 8, sockets.Counter("detect"), FrameReader(), 10_000, fill_ms)
            thread.join()
            assert [m["index"] for m in batch] == list(range(expected))
            while receiver.poll(500):  # the rest of the trickle
                receiver.recv_multipart()
    finally:
        ctx.destroy(linger=0)
