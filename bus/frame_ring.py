"""Frames in shared memory: decode writes pixels once, workers on the same host read them in place.

A raw 1920×1088 frame is 6.27 MB; through ZeroMQ it is copied into the socket,
through the kernel and out again. A frame ring is one file in ``/dev/shm``
(tmpfs: memory, never a disk) holding ``slots`` frames of ``slot_bytes`` each.
Decode copies each frame into a free slot and sends only the ``image``
message's ``shm`` reference ``{name, slot, slot_bytes}``; a worker maps the file
read-only and wraps the slot in an ndarray without copying.

A slot is given back (``release``) only when the track stage has acknowledged
its frame, so the pixels stay put while any worker may still be sent them,
resends included; decode's in-flight limit bounds how many slots are held.
A slow worker may still be reading a frame that was sent again, done by another
worker and acknowledged: its slot may then hold a newer frame, but the track stage
keeps the first detections of a frame, made before the ack, and drops the rest.

The file is created 0600 with ``O_EXCL`` under a random name: like the
launcher's 0700 ipc folder, only the same user's processes can read it. A
reader refuses names that are not a ring's (``messages.SHM_NAME``: no path),
files that are not regular or not its user's, and slots outside the file.
A ring's file is removed by ``close``; one left by a decode that was killed
is removed by the next decode (``remove_stale``).
"""
from __future__ import annotations

import mmap
import os
import secrets
import stat
from collections import OrderedDict, deque
from pathlib import Path

import numpy as np

from bus.messages import SHM_NAME

FOLDER = Path("/dev/shm")
CHANNELS = 3  # BGR, |u1


class BadReference(ValueError):
    """An ``image`` message's ``shm`` reference that cannot be read; the text says why in one line."""


def frame_bytes(height: int, width: int) -> int:
    return height * width * CHANNELS


def slots_that_fit(wanted: int, slot_bytes: int, free_bytes: int, share: float = 0.5) -> int:
    """How many of ``wanted`` slots a ring takes from ``free_bytes`` of room, using at most ``share``
    of it: a small /dev/shm (Docker gives 64 MB) gets a smaller ring, the other frames go raw."""
    return min(wanted, int(free_bytes * share) // slot_bytes)


def free_bytes(folder: Path = FOLDER) -> int:
    room = os.statvfs(folder)
    return room.f_bavail * room.f_frsize


class FrameRing:
    """The writing end (decode): ``slots`` frame slots of ``slot_bytes`` in one new file of ``folder``.

    Raises OSError when the file cannot be made, e.g. ENOSPC when ``folder`` has no room
    (the space is reserved up front, so a full tmpfs never bites later as SIGBUS).
    """

    def __init__(self, slots: int, slot_bytes: int, folder: Path = FOLDER):
        self.slot_bytes = slot_bytes
        self.name = f"posebus-{os.getpid()}-{secrets.token_hex(8)}"
        self.path = folder / self.name
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, slots * slot_bytes)
            self.map = mmap.mmap(fd, slots * slot_bytes)
        except OSError:
            self.path.unlink()
            raise
        finally:
            os.close(fd)
        self.free = deque(range(slots))

    def put(self, pixels: np.ndarray) -> dict | None:
        """Copy a (H, W, 3) |u1 frame into a free slot; its ``shm`` reference, or None when no
        slot is free or the frame does not fit (send it another way)."""
        if not self.free or pixels.nbytes > self.slot_bytes or pixels.dtype != np.uint8:
            return None
        slot = self.free.popleft()
        view = np.frombuffer(self.map, np.uint8, pixels.nbytes, slot * self.slot_bytes).reshape(pixels.shape)
        view[...] = pixels
        del view  # an mmap with views on it cannot be closed
        return {"name": self.name, "slot": slot, "slot_bytes": self.slot_bytes}

    def release(self, slot: int) -> None:
        """The frame in ``slot`` is done with: the slot may be written again."""
        self.free.append(slot)

    def close(self) -> None:
        """Remove the file; workers' existing mappings stay readable until they let go of them."""
        self.path.unlink(missing_ok=True)
        self.map.close()


class FrameReader:
    """The reading end (a worker): zero-copy views of frames referenced by ``image`` messages.

    Keeps the ``max_open`` most recently used rings mapped (a ring per job), and lets go of
    those whose file decode has removed (``prune``): a mapping pins the tmpfs memory.
    """

    def __init__(self, max_open: int = 16, folder: Path = FOLDER):
        self.max_open, self.folder = max_open, folder
        self.open: OrderedDict[str, mmap.mmap] = OrderedDict()

    def pixels(self, message: dict) -> np.ndarray:
        """The (height, width, 3) |u1 frame of a validated ``image`` message with ``shm``, read-only.
        Raises BadReference."""
        ref = message["shm"]
        height, width, slot, slot_bytes = message["height"], message["width"], ref["slot"], ref["slot_bytes"]
        size = frame_bytes(height, width)
        if height < 0 or width < 0 or size > slot_bytes:
            raise BadReference(f"frame {message['index']}: {width}×{height} does not fit a slot of {slot_bytes} bytes")
        mapping = self._mapping(ref["name"])
        if len(mapping) % slot_bytes or (slot + 1) * slot_bytes > len(mapping):
            raise BadReference(f"frame {message['index']}: slot {slot} of {slot_bytes} bytes is not in "
                               f"{ref['name']} ({len(mapping)} bytes)")
        return np.frombuffer(mapping, np.uint8, size, slot * slot_bytes).reshape(height, width, CHANNELS)

    def _mapping(self, name: str) -> mmap.mmap:
        if not SHM_NAME.match(name):  # messages.validate checks it too; this guards the path below
            raise BadReference(f"{name!r} is not a frame ring's name")
        if name in self.open:
            self.open.move_to_end(name)
            return self.open[name]
        self.prune()
        try:
            fd = os.open(self.folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO would block
        except OSError as exc:
            raise BadReference(f"cannot open frame ring {name}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size == 0:
                raise BadReference(f"{name} is not a frame ring of this user")
            mapping = mmap.mmap(fd, info.st_size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.open[name] = mapping
        while len(self.open) > self.max_open:
            self.open.popitem(last=False)  # unmapped once the last frame viewing it is gone
        return mapping

    def prune(self) -> None:
        """Let go of rings whose file is gone (their job has ended)."""
        for name in [name for name in self.open if not (self.folder / name).exists()]:
            del self.open[name]


def remove_stale(folder: Path = FOLDER) -> list[str]:
    """Remove this user's ring files whose decode process is gone (killed before it could); their names."""
    removed = []
    for path in folder.glob("posebus-*"):
        if not SHM_NAME.match(path.name) or not _dead(int(path.name.split("-")[1])):
            continue
        try:
            if path.lstat().st_uid == os.getuid():
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:  # another decode removed it first
            pass
    return removed


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    except OverflowError:
        return True
    return False

