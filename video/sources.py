"""Frame sources: a video file, an image folder, a camera index or a stream URL.

``open_source(spec)`` returns a ``Source``: its ``info`` (fps, size, frame count
when known) and an iterator of ``(index, pts_ms, bgr_image)`` with 0-based,
contiguous indices. Every failure is a ``SourceError`` with a one-line reason.

Frames come at the source's size; ``fit_within`` is the downscale policy that
decode applies to them before they go on the bus (docs/protocol.md, "Frame size").
"""
from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# How long a stream may take to answer, and then to send each frame, before its job ends with an error
# (OpenCV's FFmpeg backend, CAP_PROP_OPEN/READ_TIMEOUT_MSEC; without them a silent server blocks for ever).
STREAM_TIMEOUT_MS = 10_000


# Windows paths as a backend on the Windows side of WSL holds them: a drive (C:\clips\run.mp4, C:/clips/run.mp4)
# or a distribution's files shared to Windows (\\wsl$\Ubuntu\home\..., \\wsl.localhost\Ubuntu\home\...).
WINDOWS_DRIVE = re.compile(r"^([A-Za-z]):[\\/](.*)$", re.DOTALL)
WSL_SHARE = re.compile(r"^[\\/]{2}(?:wsl\$|wsl\.localhost)[\\/]([^\\/]+)(?:[\\/](.*))?$", re.IGNORECASE | re.DOTALL)
WSL_CONF = Path("/etc/wsl.conf")


class SourceError(Exception):
    pass


def linux_path(spec: str, mount_root: str = "/mnt", distribution: str | None = None) -> str | None:
    """The path WSL gives a Windows path, or None when ``spec`` is none.

    ``C:\\clips\\run.mp4`` -> ``/mnt/c/clips/run.mp4`` (drives are under ``mount_root``, WSL's automount
    root); ``\\\\wsl$\\Ubuntu\\home\\me\\run.mp4`` (or ``\\\\wsl.localhost\\...``) -> ``/home/me/run.mp4``.
    ``distribution``: the WSL distribution posebus runs in (None: not known, any is taken); a share
    of another one is not on this file system (SourceError).
    """
    drive = WINDOWS_DRIVE.match(spec)
    if drive:
        rest = "/".join(part for part in re.split(r"[\\/]", drive.group(2)) if part)
        return f"{mount_root.rstrip('/')}/{drive.group(1).lower()}/{rest}".rstrip("/")
    share = WSL_SHARE.match(spec)
    if share is None:
        return None
    if distribution is not None and share.group(1).lower() != distribution.lower():
        raise SourceError(f"{spec} is in WSL distribution {share.group(1)}, but posebus runs in {distribution}")
    return "/" + "/".join(part for part in re.split(r"[\\/]", share.group(2) or "") if part)


def wsl_mount_root(conf: Path = WSL_CONF) -> str:
    """WSL's drive mount root: ``[automount] root`` of /etc/wsl.conf, else /mnt."""
    parser = configparser.ConfigParser()
    try:
        parser.read(conf)
    except configparser.Error:
        return "/mnt"
    return parser.get("automount", "root", fallback="/mnt").strip().strip('"') or "/mnt"


def local_path(spec: str) -> tuple[str, str | None]:
    """(the path to open, the Windows path it was mapped from or None): ``linux_path`` for this host."""
    mapped = linux_path(spec, wsl_mount_root(), os.environ.get("WSL_DISTRO_NAME"))
    if mapped is None:
        return spec, None
    if not Path(mapped).exists():
        raise SourceError(f"{spec} is {mapped} as WSL maps Windows paths, and {mapped} does not exist")
    return mapped, spec


@dataclass
class SourceInfo:
    source: str
    kind: str  # file | folder | camera | stream
    fps: float
    width: int
    height: int
    frame_count: int | None
    mapped_from: str | None = None  # the Windows path that ``source`` was mapped from (``local_path``)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any OpenCV image (gray, BGRA, 16-bit, float) -> (H, W, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect ratio kept, so that the longer side is at most ``max_side``."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_within(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) image -> the same, downscaled to ``fitted_size`` if it is larger.

    INTER_AREA averages the source pixels under each output pixel: no aliasing, unlike
    linear interpolation, which beyond a factor of 2 skips pixels (thin lines vanish)."""
    height, width = image.shape[:2]
    size = fitted_size(width, height, max_side)
    return image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def natural_key(path: Path) -> list:
    """Sort key so that frame-2.png comes before frame-10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class Source:
    def __init__(self, info: SourceInfo, frames: Iterator[tuple[int, float, np.ndarray]]):
        self.info = info
        self._frames = frames

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        return self._frames


def is_live(spec: str) -> bool:
    """A camera index or a stream URL: opening one may wait for a device or a server."""
    return spec.isdigit() or "://" in spec


def open_source(spec: str, fps: float | None = None) -> Source:
    """Open ``spec``; ``fps`` overrides the rate for folders (default 30) and streams."""
    if spec.isdigit():
        return _open_capture(cv2.VideoCapture(int(spec)), spec, "camera", fps)
    if "://" in spec:
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        return _open_capture(capture, spec, "stream", fps)
    spec, mapped_from = local_path(spec)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"no such file or folder: {spec}")
    if path.is_dir():
        source = _open_folder(path, fps or 30.0)
    elif not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {spec}: permission denied")
    elif path.stat().st_size == 0:
        raise SourceError(f"{spec} is empty (0 bytes)")
    else:
        source = _open_capture(cv2.VideoCapture(str(path), cv2.CAP_FFMPEG), spec, "file", fps)
    source.info.mapped_from = mapped_from
    return source


def _open_capture(capture: cv2.VideoCapture, spec: str, kind: str, fps: float | None) -> Source:
    if not capture.isOpened():
        what = {"file": "not a video OpenCV can decode, or truncated", "camera": "no such camera",
                "stream": f"could not connect (refused, unreachable, or no answer in {STREAM_TIMEOUT_MS / 1000:g} s)"}
        raise SourceError(f"cannot open {spec}: {what[kind]}")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    first = capture.read()
    if not first[0]:
        capture.release()
        raise SourceError(f"cannot decode any frame of {spec}")
    info = SourceInfo(
        source=spec,
        kind=kind,
        fps=fps or capture.get(cv2.CAP_PROP_FPS) or 30.0,
        # The decoded frame's size, not the container's: it is the size after the display
        # rotation of a phone video, whatever the backend reports.
        width=first[1].shape[1],
        height=first[1].shape[0],
        frame_count=count if kind in ("file", "stream") and count > 0 else None,  # a live stream has none
    )
    return Source(info, _capture_frames(capture, first[1], info))


def _capture_frames(capture: cv2.VideoCapture, first: np.ndarray, info: SourceInfo):
    index, image = 0, first
    try:
        while True:
            # Container timestamps where they exist (variable frame rate), else index / fps.
            pts = capture.get(cv2.CAP_PROP_POS_MSEC) if info.kind == "file" else None
            yield index, pts if pts is not None and pts >= 0 else index * 1000.0 / info.fps, to_bgr8(image)
            ok, image = capture.read()
            if not ok:
                break
            index += 1
    finally:
        capture.release()
    decoded = index + 1
    if info.frame_count is not None and decoded < info.frame_count:
        raise SourceError(f"{info.source} is truncated or corrupt: decoded {decoded} of {info.frame_count} frames")
    if info.kind == "stream" and info.frame_count is None:  # live: it has no end, so this is a drop
        raise SourceError(f"stream {info.source} stopped after {decoded} frames "
                          f"(connection closed, or no frame for {STREAM_TIMEOUT_MS / 1000:g} s)")


def trimmed(source: Source, start: float | None = None, end: float | None = None,
            max_frames: int | None = None) -> Source:
    """The frames of ``source`` whose time is in [``start``, ``end``) seconds, at most ``max_frames`` of them,
    renumbered from 0; each keeps its presentation time in the source (``pts_ms``). The frames before
    ``start`` are decoded and skipped (exact, unlike seeking to a key frame). ``frame_count`` stays known
    only when ``max_frames`` alone trims a source that announces one."""
    if start is None and end is None and max_frames is None:
        return source
    if start is not None and end is not None and end <= start:
        raise SourceError(f"end {end:g} s is not after start {start:g} s")
    count = source.info.frame_count
    count = None if start is not None or end is not None or count is None else min(count, max_frames)
    info = replace(source.info, frame_count=count)
    return Source(info, _trimmed_frames(iter(source), start, end, max_frames))


def _trimmed_frames(frames, start: float | None, end: float | None, max_frames: int | None):
    index = 0
    try:
        for _source_index, pts_ms, image in frames:
            if max_frames is not None and index >= max_frames or end is not None and pts_ms >= end * 1000.0:
                break
            if start is None or pts_ms >= start * 1000.0:
                yield index, pts_ms, image
                index += 1
    finally:
        frames.close()  # releases the capture now, and skips its truncation check: the rest was not wanted
    if index == 0:
        raise SourceError(f"no frame between {start or 0:g} s and the end of the source" if end is None else
                          f"no frame between {start or 0:g} s and {end:g} s")


def _open_folder(folder: Path, fps: float) -> Source:
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not paths:
        raise SourceError(f"no images in folder {folder}")
    first = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise SourceError(f"cannot decode image {paths[0]}")
    height, width = first.shape[:2]
    info = SourceInfo(str(folder), "folder", fps, width, height, len(paths))
    return Source(info, _folder_frames(paths, fps))


def _folder_frames(paths: list[Path], fps: float):
    for index, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SourceError(f"cannot decode image {path} (frame {index})")
        yield index, index * 1000.0 / fps, to_bgr8(image)
