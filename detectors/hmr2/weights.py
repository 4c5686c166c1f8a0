"""Finding (and, on request, fetching) the released HMR 2.0 checkpoint.

4D-Humans keeps its files under a cache folder, ``~/.cache/4DHumans`` by default,
with the checkpoint at ``CHECKPOINT_IN_CACHE`` inside it. We look where a user
of 4D-Humans would already have it, including a Windows home seen from WSL.

Upstream's downloader only checks that the tarball exists, so a truncated
download is never repaired; ``download`` resumes a partial file with an HTTP
Range request and accepts it only at the size the server announced.
"""
from __future__ import annotations

import glob
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping

DEFAULT_URL = "https://people.eecs.berkeley.edu/~jathushan/projects/4dhumans/hmr2_data.tar.gz"
CHECKPOINT_IN_CACHE = Path("logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt")
CACHE_ENV = "POSEBUS_HMR2_CACHE"
CACHE_IN_HOME = Path(".cache/4DHumans")


class IncompleteDownload(OSError):
    """The transfer stopped short of the announced size; the partial file is kept for resuming."""


def candidate_cache_dirs(cache_dir: str | Path | None = None, environ: Mapping[str, str] = os.environ,
                         wsl_homes: str = "/mnt/c/Users/*") -> list[Path]:
    """Cache folders to look in, most specific first, without repeats."""
    candidates = [
        cache_dir,
        environ.get(CACHE_ENV),
        Path(environ["HOME"]) / CACHE_IN_HOME if environ.get("HOME") else None,
        *(Path(home) / CACHE_IN_HOME for home in sorted(glob.glob(wsl_homes))),
        Path(environ["USERPROFILE"]) / CACHE_IN_HOME if environ.get("USERPROFILE") else None,
    ]
    return list(dict.fromkeys(Path(c).expanduser() for c in candidates if c))


def find_checkpoint(checkpoint: str | Path | None = None, cache_dir: str | Path | None = None,
                    environ: Mapping[str, str] = os.environ,
                    wsl_homes: str = "/mnt/c/Users/*") -> tuple[Path | None, list[Path]]:
    """(the checkpoint, or None; every path looked at). An explicit path is the only one looked at."""
    if checkpoint is not None:
        searched = [Path(checkpoint).expanduser()]
    else:
        searched = [folder / CHECKPOINT_IN_CACHE for folder in candidate_cache_dirs(cache_dir, environ, wsl_homes)]
    return next((path for path in searched if path.is_file()), None), searched


def cache_dir_of(checkpoint: Path) -> Path | None:
    """The cache folder a checkpoint sits in, if it is laid out as 4D-Humans lays it out."""
    checkpoint = Path(checkpoint).resolve()
    depth = len(CHECKPOINT_IN_CACHE.parts)
    if len(checkpoint.parts) <= depth or checkpoint.parts[-depth:-1] != CHECKPOINT_IN_CACHE.parts[:-1]:
        return None
    return checkpoint.parents[depth - 1]


def missing_checkpoint_report(searched: list[Path], url: str = DEFAULT_URL) -> str:
    """What to get and where to put it, for a person reading a log."""
    looked = "\n".join(f"  - {path}" for path in searched)
    return (
        "HMR 2.0 checkpoint not found. Looked at:\n"
        f"{looked}\n"
        "To get it: download the 4D-Humans data tarball\n"
        f"  {url}\n"
        "(the Berkeley server is often unreachable; copies of the same hmr2_data.tar.gz are on Hugging Face,\n"
        "e.g. the camenduru/4D-Humans repository), then unpack it into a cache folder:\n"
        "  mkdir -p ~/.cache/4DHumans && tar -xzf hmr2_data.tar.gz -C ~/.cache/4DHumans\n"
        f"so that <cache>/{CHECKPOINT_IN_CACHE.as_posix()} exists (about 2.5 GB).\n"
        f"Another cache folder works too: set {CACHE_ENV}=<cache>, or give the .ckpt path explicitly.\n"
        "No SMPL model file is needed: the checkpoint carries the SMPL buffers."
    )


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


def download(url: str, dest: str | Path, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Path:
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
            try:
                shutil.copyfileobj(response, out, chunk_size)
            except http.client.IncompleteRead as error:  # connection dropped: keep what arrived
                out.write(error.partial)
    size = part.stat().st_size
    if size != total:
        raise IncompleteDownload(f"{part}: {size} of {total} bytes; run again to resume")
    return part.replace(dest)


def fetch_checkpoint(cache_dir: str | Path, url: str = DEFAULT_URL) -> Path:
    """Download (resumably) and unpack the 4D-Humans data tarball into cache_dir; the checkpoint path."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / Path(urllib.parse.urlparse(url).path).name
    part = tarball.with_name(tarball.name + ".part")
    if tarball.exists() and not part.exists():
        # A tarball left by upstream's downloader may be truncated: treat it as a partial
        # download, so the server either completes it or confirms it whole (416).
        tarball.replace(part)
    download(url, tarball)
    with tarfile.open(tarball) as archive:
        archive.extractall(cache_dir, filter="data")  # "data": no absolute paths, links out, or devices
    checkpoint = cache_dir / CHECKPOINT_IN_CACHE
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{tarball} unpacked, but {checkpoint} is not in it")
    return checkpoint
