"""Video made by the tests: files at a constant rate (OpenCV) and a variable rate (Matroska by hand),
a portrait phone video (an MP4 with a rotation), and a camera-like MJPEG stream over HTTP."""
from __future__ import annotations

import http.server
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from bench.clips import write_video as write_clip  # noqa: F401 (the tests' name for it)


def _element(element_id: int, payload: bytes) -> bytes:
    """One EBML element: its id's bytes, an 8-byte size, the payload."""
    size = (len(payload) | 1 << 56).to_bytes(8, "big")  # the leading 0x01 byte says: 7 more size bytes
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + size + payload


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(8, "big"))


def write_vfr_mkv(path: Path, images: list[np.ndarray], pts_ms: list[int], nominal_fps: int = 30) -> Path:
    """MJPEG in Matroska with exactly these presentation times (ms, < 32768): a variable frame
    rate video without ffmpeg or PyAV. Like a phone's, the track declares a nominal rate.

    The smallest layout FFmpeg reads: EBML header; Segment {Info (1 ms ticks), Tracks (one
    V_MJPEG track), one Cluster at time 0 holding a SimpleBlock per frame (16-bit relative time)}.
    """
    height, width = images[0].shape[:2]
    header = _element(0x1A45DFA3, _element(0x4282, b"matroska") + _uint(0x4287, 2) + _uint(0x4285, 2))
    info = _element(0x1549A966, _uint(0x2AD7B1, 1_000_000))  # TimecodeScale: ns per tick
    video = _element(0xE0, _uint(0xB0, width) + _uint(0xBA, height))
    track = _element(0xAE, _uint(0xD7, 1) + _uint(0x73C5, 1) + _uint(0x83, 1) + _element(0x86, b"V_MJPEG")
                     + _uint(0x23E383, round(1e9 / nominal_fps)) + video)  # number, uid, video, codec, DefaultDuration
    blocks = b"".join(
        _element(0xA3, b"\x81" + struct.pack(">hB", pts, 0x80) + cv2.imencode(".jpg", image)[1].tobytes())
        for pts, image in zip(pts_ms, images))  # track 1, time, keyframe flag, JPEG
    cluster = _element(0x1F43B675, _uint(0xE7, 0) + blocks)
    path.write_bytes(header + _element(0x18538067, info + _element(0x1654AE6B, track) + cluster))
    return path


BLACK_FRAMES = 20  # before the person of late_rider_clip appears


def late_rider_clip(path: Path, rider_frames: int, size: tuple[int, int] = (960, 544)) -> Path:
    """``BLACK_FRAMES`` black frames, then the first ``rider_frames`` frames of vid.mp4 (the runner) scaled to
    ``size``, as an MJPEG AVI at 30 fps: a clip whose person appears only after a while."""
    from conftest import VIDEO

    capture = cv2.VideoCapture(str(VIDEO))
    images = [np.zeros((size[1], size[0], 3), np.uint8)] * BLACK_FRAMES
    images += [cv2.resize(capture.read()[1], size, interpolation=cv2.INTER_AREA) for _ in range(rider_frames)]
    capture.release()
    return write_clip(path, images)


def portrait_copy(video: Path, path: Path) -> Path:
    """``video`` (an MP4) with its track turned 90° clockwise for display, as a phone held upright records it.

    The pixels stay as they are; the track header's display matrix (ISO 14496-12 ``tkhd``,
    version 0) says to rotate them, which decoders apply.
    """
    data = bytearray(video.read_bytes())
    tkhd = data.find(b"tkhd")
    assert tkhd > 0 and data[tkhd + 4] == 0, "expected a version-0 track header"
    matrix = tkhd + 4 + 40  # after version/flags, times, track id, duration, layer, group, volume
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(data)
    return path


@contextmanager
def mjpeg_stream(images: list[np.ndarray], then: str = "close"):
    """An MJPEG-over-HTTP stream (``multipart/x-mixed-replace``, as IP cameras serve it) on a
    loopback port; yields its URL. After the images it closes the connection (``then="close"``)
    or keeps it open and sends nothing more (``"stall"``) until the block ends."""
    done = threading.Event()

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for image in images:
                jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (len(jpeg), jpeg))
            self.wfile.flush()
            if then == "stall":
                done.wait()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    finally:
        done.set()
        server.shutdown()
        server.server_close()



def two_runners(video: Path, path: Path, frames: int = 90) -> Path:
    """``bench.blazepose.two_runners_frames`` (vid.mp4's runner beside itself 2 s later) as an MJPEG clip."""
    from bench.blazepose import two_runners_frames

    return write_clip(path, two_runners_frames(video, frames))
