"""Overlay video: each source frame with its people drawn on it (docs/outputs.md).

Per person: the mesh silhouette (HMR 2.0 with ``--mesh``), the skeleton, the
box and a ``#track state`` label, all in the colour of the person's tracking
state; a legend of those colours sits in the top-left corner.

    python -m outputs.overlay VIDEO RESULTS.jsonl -o overlay.mp4
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np

from bus.messages import STATES
from options.groups import TRIM
from outputs.report.plots import STATE_COLOURS as REPORT_STATE_COLOURS
from outputs.report.summary import split_job
from pose.skeleton import BONES, JOINT_INDEX
from video.sources import SourceError, open_source, trimmed

# H.264 (libx264, inside PyAV's wheels) in MP4, 4:2:0, the index (moov) at the front: what every browser
# plays in <video>, and starts playing before the whole file has arrived.
ENCODER, CODEC, PIXEL_FORMAT = "libx264", "h264", "yuv420p"
# crf 20: the drawing stays sharp. ultrafast: about the former mp4v writer's time (job_end waits for the
# overlay); superfast and veryfast make smaller files at 1.6 and 2.2 times the encoder's time (bench.overlay).
ENCODER_OPTIONS = {"crf": "20", "preset": "ultrafast"}
MP4_OPTIONS = {"movflags": "+faststart"}


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return blue, green, red


# The report's palette, so a state has one colour in the report and in the video.
STATE_COLOURS: dict[str, tuple[int, int, int]] = {state: _bgr(REPORT_STATE_COLOURS[state]) for state in STATES}
MESH_OPACITY = 0.4
_BONE_INDICES = np.array([(JOINT_INDEX[a], JOINT_INDEX[b]) for a, b in BONES])


class Rendered(NamedTuple):
    frames: int
    codec: str


class OverlayWriter:
    """Writes overlay frames to an H.264 mp4 (``CODEC``) at a constant ``fps``.

    mesh_faces: (F, 3) vertex indices (job_start.mesh_faces) to fill the mesh
    silhouette with; without them the silhouette is the vertices' convex hull.
    4:2:0 needs even sides: an odd width or height gets one black column or row.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, mesh_faces=None):
        self.size = (int(width), int(height))
        self.mesh_faces = None if mesh_faces is None else np.asarray(mesh_faces, dtype=np.int64)
        self.codec = CODEC
        self.frames = 0
        self._container = av.open(str(path), "w", format="mp4", options=MP4_OPTIONS)
        self._stream = self._container.add_stream(ENCODER, rate=Fraction(float(fps)).limit_denominator(1001),
                                                  options=ENCODER_OPTIONS)
        self._stream.width, self._stream.height = (side + side % 2 for side in self.size)
        self._stream.pix_fmt = PIXEL_FORMAT

    def write(self, image_bgr: np.ndarray, frame_message: dict | None = None) -> None:
        """Append one frame: (H, W, 3) uint8 BGR, drawn over with ``frame_message`` if given."""
        if image_bgr.shape[1::-1] != self.size:  # a wrongly sized frame would be scaled without a word
            raise ValueError(f"frame is {image_bgr.shape[1]}x{image_bgr.shape[0]}, the video "
                             f"{self.size[0]}x{self.size[1]}")
        drawn = image_bgr if frame_message is None else draw_frame(image_bgr, frame_message, self.mesh_faces)
        width, height = self.size
        drawn = np.pad(drawn, ((0, height % 2), (0, width % 2), (0, 0)))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn), format="bgr24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and write the index (moved to the front of the file)."""
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def render_overlay(video_path: str | Path, messages: list[dict], out_path: str | Path) -> Rendered:
    """Decode ``video_path`` (a video file or image folder, as decode reads it) and write its overlay.

    Frame i is drawn with the job's frame message of index i; a frame without
    one is copied as is. fps is the job's (the container's) rate.
    """
    job = split_job(messages)
    start = job.start or {}
    # The part of the source the job took (its --start/--end/--max-frames), numbered as the job's frames.
    source = trimmed(open_source(str(video_path), start.get("fps")), **TRIM.values(start.get("options", {})))
    by_index = {frame["index"]: frame for frame in job.frames}
    with OverlayWriter(out_path, start.get("fps", source.info.fps), source.info.width, source.info.height,
                       start.get("mesh_faces")) as writer:
        for index, _pts_ms, image in source:
            writer.write(image, by_index.get(index))
    return Rendered(writer.frames, writer.codec)


def write_overlay(messages: list[dict], out_path: str | Path) -> Rendered:
    """The overlay of a job's published messages, on the source its job_start names."""
    return render_overlay(split_job(messages).start["source"], messages, out_path)


# --- drawing --------------------------------------------------------------------

def draw_frame(image_bgr: np.ndarray, frame_message: dict, mesh_faces: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image_bgr`` with the frame's people and the state legend drawn on it."""
    canvas = image_bgr.copy()
    scale = max(canvas.shape[:2]) / 1000  # line widths and text grow with the picture
    for person in reversed(frame_message["people"]):  # the primary subject last, on top
        colour = STATE_COLOURS[person["state"]]
        if person.get("vertices") is not None and person.get("camera") is not None:
            mask = mesh_silhouette(np.asarray(person["vertices"], dtype=float), person["camera"],
                                   canvas.shape[:2], mesh_faces)
            blend(canvas, mask, colour, MESH_OPACITY)
        draw_skeleton(canvas, np.asarray(person["keypoints_2d"], dtype=float), colour, scale)
        draw_box(canvas, np.asarray(person["bbox"], dtype=float), f"#{person['track_id']} {person['state']}",
                 colour, scale)
    draw_legend(canvas, scale)
    return canvas


def project_mesh(vertices: np.ndarray, camera: dict) -> np.ndarray | None:
    """(V, 3) SMPL-frame vertices -> (V, 2) pixels with the person's camera; None if any is behind it."""
    points = vertices + np.asarray(camera["translation"], dtype=float)
    if not (points[:, 2] > 0).all():
        return None
    pixels = camera["focal_length"] * points[:, :2] / points[:, 2:3] + np.asarray(camera["principal_point"], float)
    return pixels if np.isfinite(pixels).all() else None


def mesh_silhouette(vertices: np.ndarray, camera: dict, shape: tuple[int, int],
                    faces: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool mask of the projected mesh.

    With faces, the union of its triangles, filled one by one: ``cv2.fillPoly``
    on all of them at once fills overlaps even-odd (holes) and is far slower.
    Without, the convex hull of the vertices.
    """
    mask = np.zeros(shape, dtype=np.uint8)
    pixels = project_mesh(vertices, camera)
    if pixels is None:
        return mask.astype(bool)
    pixels = np.round(pixels).astype(np.int32)
    if faces is None:
        cv2.fillConvexPoly(mask, cv2.convexHull(pixels), 255)
    else:
        for triangle in pixels[faces]:
            cv2.fillConvexPoly(mask, triangle, 255)
    return mask.astype(bool)


def blend(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], opacity: float) -> None:
    """Tint ``canvas`` (in place) towards ``colour`` where ``mask`` is set."""
    canvas[mask] = (canvas[mask] * (1 - opacity) + np.array(colour) * opacity).astype(np.uint8)


def draw_skeleton(canvas: np.ndarray, keypoints_2d: np.ndarray, colour: tuple[int, int, int], scale: float) -> None:
    """Bones and joints of (J, 3) [x, y, confidence] canonical keypoints; joints with confidence 0 are skipped."""
    visible = np.isfinite(keypoints_2d).all(axis=1) & (np.nan_to_num(keypoints_2d[:, 2]) > 0)
    points = np.round(np.nan_to_num(keypoints_2d[:, :2])).astype(int)
    thickness = max(1, round(3 * scale))
    for a, b in _BONE_INDICES:
        if visible[a] and visible[b]:
            cv2.line(canvas, tuple(points[a]), tuple(points[b]), colour, thickness, cv2.LINE_AA)
    for point in points[visible]:
        cv2.circle(canvas, tuple(point), thickness + 2, colour, -1, cv2.LINE_AA)


def draw_box(canvas: np.ndarray, bbox_xywh: np.ndarray, label: str, colour: tuple[int, int, int],
             scale: float) -> None:
    """The box and, above its top-left corner, its label."""
    if not np.isfinite(bbox_xywh).all():
        return
    x, y, w, h = np.round(bbox_xywh).astype(int)
    cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, max(1, round(2 * scale)), cv2.LINE_AA)
    _text(canvas, label, (x, max(y - round(8 * scale), round(20 * scale))), colour, scale)


def draw_legend(canvas: np.ndarray, scale: float) -> None:
    """One swatch and name per state, on a dark panel in the top-left corner."""
    row = round(30 * scale)
    pad = round(10 * scale)
    cv2.rectangle(canvas, (0, 0), (round(190 * scale), 2 * pad + row * len(STATE_COLOURS)), (30, 30, 30), -1)
    for i, (state, colour) in enumerate(STATE_COLOURS.items()):
        top = pad + i * row
        cv2.rectangle(canvas, (pad, top + pad // 2), (pad + row - pad, top + row - pad // 2), colour, -1)
        _text(canvas, state, (pad + row, top + row - pad), (255, 255, 255), scale)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int], scale: float) -> None:
    """Text with a dark outline, legible on snow and on shadow alike."""
    size, thickness = 0.6 * scale, max(1, round(1.5 * scale))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, colour, thickness, cv2.LINE_AA)


def main(argv: list[str] | None = None) -> int:
    from outputs.report.page import read_messages

    parser = argparse.ArgumentParser(prog="python -m outputs.overlay", description=__doc__.split("\n")[0])
    parser.add_argument("video", help="the job's source: a video file or image folder")
    parser.add_argument("results", type=Path, help="a DIR/<job>.jsonl file written by launch.py --out DIR")
    parser.add_argument("-o", "--output", type=Path, help="mp4 to write (default: RESULTS with .overlay.mp4)")
    args = parser.parse_args(argv)
    output = args.output or args.results.with_suffix(".overlay.mp4")
    try:
        rendered = render_overlay(args.video, read_messages(args.results), output)
    except (OSError, ValueError, RuntimeError, SourceError) as exc:
        print(f"python -m outputs.overlay: error: {exc}", file=sys.stderr)
        return 1
    print(f"{output}: {rendered.frames} frames, codec {rendered.codec}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
