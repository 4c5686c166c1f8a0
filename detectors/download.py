"""A resumable HTTP download, shared by every model file posebus fetches.

A partial file is kept as ``dest.part`` and resumed with an HTTP Range request;
the file is accepted only at the size the server announced, so a truncated
download is never mistaken for a whole one.
"""
from __future__ import annotations

import http.client
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

Progress = Callable[[int, int], None]  # (bytes so far, total bytes)


class IncompleteDownload(OSError):
    """The transfer stopped short of the announced size; the partial file is kept for resuming."""


def _announced_total(response, already: int) -> int:
    """Full file size from a 200 (Content-Length) or 206 (Content-Range 'bytes a-b/total') reply."""
    content_range = response.headers.get("Content-Range")
    if response.status == 206 and content_range:
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", content_range.strip())
        if not match or int(match.group(1)) != already:
            raise IncompleteDownload(f"server answered Range bytes={already}- with Content-Range {content_range!r}")
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    if length is None:
        raise IncompleteDownload("server sent no Content-Length, so a complete download cannot be told apart")
    return int(length)


def download(url: str, dest: str | Path, timeout: float = 60.0, chunk_size: int = 1 << 20,
             progress: Progress | None = None) -> Path:
    """Fetch url to dest via ``dest.part``, resuming a previous partial download."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        # 416: nothing left past our offset; accept the part only if it is exactly the file.
        total = re.fullmatch(r"bytes \*/(\d+)", (error.headers.get("Content-Range") or "").strip())
        if error.code == 416 and total and int(total.group(1)) == have:
            return part.replace(dest)
        raise
    with response:
        resumed = have > 0 and response.status == 206
        total = _announced_total(response, have if resumed else 0)
        with open(part, "ab" if resumed else "wb") as out:
            done = out.tell()
            try:
                while chunk := response.read(chunk_size):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            except http.client.IncompleteRead as error:  # connection dropped: keep what arrived
                out.write(error.partial)
    size = part.stat().st_size
    if size != total:
        raise IncompleteDownload(f"{part}: {size} of {total} bytes; run again to resume")
    return part.replace(dest)


def progress_bar(label: str, stream=sys.stderr) -> Progress:
    """A one-line progress display on a terminal (nothing when ``stream`` is not one)."""
    def show(done: int, total: int) -> None:
        if stream.isatty():
            filled = int(30 * done / total) if total else 0
            end = "\n" if done >= total else ""
            stream.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done / 1e6:.1f}/{total / 1e6:.1f} MB{end}")
            stream.flush()
    return show
