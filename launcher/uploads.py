"""Uploads over the control socket: a backend that holds a clip posebus cannot open (bytes in memory, a file on
another machine) sends its bytes in chunks; the file is spooled to a folder of its own and becomes a job's source.

    upload         {name, size}              -> {upload, chunk_bytes}   size at most --max-upload-mb
    upload_chunk   {upload, offset, data}    -> {received}              chunks in order, at most chunk_bytes each
    submit_upload  {upload, job?, options?}  -> {job}                   the complete file is the job's source

An upload that is refused midway (a chunk out of order or past the announced size, a submit before the last
chunk, no chunk for ``IDLE_S``) is discarded, its bytes removed, with an error that says why. A submitted
upload's folder is removed when its job has ended (its ``job_end`` comes after the job's result files are
written, so an overlay reads the clip before it goes), and with the pipeline's private folder at the latest.
"""
from __future__ import annotations

import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CHUNK_BYTES = 8 * 2**20  # the most a chunk may carry: well under the codec's 64 MiB message limit
IDLE_S = 120.0  # an upload with no chunk for this long was abandoned: discarded
DEFAULT_MAX_MB = 2048  # launch.py --max-upload-mb: a few minutes of 4K phone video


class UploadError(ValueError):
    """A request about an upload that cannot be honoured; the message is the control reply's ``error``."""


def spool_name(name: str) -> str:
    """A file name safe to create from the name a backend gave (its last component, odd characters as ``_``);
    the suffix stays, a hint for the demuxer."""
    base = re.split(r"[\\/]", name)[-1]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".")[:120]
    return safe or "upload"


@dataclass
class Upload:
    id: str
    name: str  # as the backend gave it
    size: int
    path: Path
    received: int = 0
    last_chunk: float = field(default_factory=time.monotonic)

    @property
    def folder(self) -> Path:
        return self.path.parent


class Uploads:
    """The uploads in progress under ``folder`` (one subfolder each), and the submitted ones until their job ends."""

    def __init__(self, folder: Path, max_bytes: int, idle_s: float = IDLE_S, clock=time.monotonic):
        self.folder, self.max_bytes, self.idle_s, self.clock = folder, max_bytes, idle_s, clock
        self.open: dict[str, Upload] = {}
        self.held: dict[str, Upload] = {}  # job id -> the upload that is its source

    def start(self, name: str, size: int) -> Upload:
        if size < 1:
            raise UploadError(f"upload {name!r}: size must be at least 1 byte, not {size}")
        if size > self.max_bytes:
            raise UploadError(f"upload {name!r} of {size} bytes exceeds the limit of {self.max_bytes} bytes "
                              "(launch.py --max-upload-mb)")
        upload_id = uuid.uuid4().hex[:16]
        upload = Upload(upload_id, name, size, self.folder / upload_id / spool_name(name), last_chunk=self.clock())
        try:
            upload.folder.mkdir(parents=True, mode=0o700)
            upload.path.touch(mode=0o600)
        except OSError as exc:
            self.remove(upload)
            raise UploadError(f"upload {name!r}: cannot spool it: {exc}") from None
        self.open[upload_id] = upload
        return upload

    def add(self, upload_id: str, offset: int, data: bytes) -> int:
        """Append one chunk at ``offset``; returns the bytes received so far. The chunk that was just taken,
        sent again (a client retrying after a lost reply), is acknowledged without being written twice."""
        upload = self._open(upload_id)
        if len(data) > CHUNK_BYTES:
            self.discard(upload_id)
            raise UploadError(f"upload {upload_id}: a chunk of {len(data)} bytes exceeds {CHUNK_BYTES}; discarded")
        if offset + len(data) == upload.received and data:
            return upload.received
        if offset != upload.received:
            self.discard(upload_id)
            raise UploadError(f"upload {upload_id}: chunk at offset {offset}, expected {upload.received}; discarded")
        if upload.received + len(data) > upload.size:
            self.discard(upload_id)
            raise UploadError(f"upload {upload_id}: {upload.received + len(data)} bytes, more than the "
                              f"{upload.size} announced; discarded")
        try:
            with upload.path.open("ab") as spool:
                spool.write(data)
        except OSError as exc:  # a full disk, say: the service goes on, this upload is lost
            self.discard(upload_id)
            raise UploadError(f"upload {upload_id}: cannot spool it: {exc}; discarded") from None
        upload.received += len(data)
        upload.last_chunk = self.clock()
        return upload.received

    def take(self, upload_id: str) -> Upload:
        """The complete upload, to become a job's source (``hold``); an incomplete one is discarded."""
        upload = self._open(upload_id)
        if upload.received < upload.size:
            self.discard(upload_id)
            raise UploadError(f"upload {upload_id} is incomplete: {upload.received} of {upload.size} bytes "
                              "received; discarded, send it again")
        return self.open.pop(upload_id)

    def hold(self, job: str, upload: Upload) -> None:
        self.held[job] = upload

    def discard(self, upload_id: str) -> None:
        upload = self.open.pop(upload_id, None)
        if upload is not None:
            self.remove(upload)

    @staticmethod
    def remove(upload: Upload) -> None:
        shutil.rmtree(upload.folder, ignore_errors=True)

    def tidy(self, ended_jobs: set[str]) -> None:
        """Discard the uploads idle past ``idle_s``; remove the files of the held ones whose job has ended."""
        now = self.clock()
        for upload_id in [u.id for u in self.open.values() if now - u.last_chunk > self.idle_s]:
            self.discard(upload_id)
        for job in ended_jobs & set(self.held):
            self.remove(self.held.pop(job))

    def _open(self, upload_id: str) -> Upload:
        upload = self.open.get(upload_id)
        if upload is None:
            raise UploadError(f"no upload {upload_id} in progress (never started, already submitted, or "
                              f"discarded: refused, or no chunk for {self.idle_s:g} s)")
        return upload
