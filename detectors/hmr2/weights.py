"""Finding (and, on request, fetching) the released HMR 2.0 checkpoint.

4D-Humans keeps its files under a cache folder, ``~/.cache/4DHumans`` by default,
with the checkpoint at ``CHECKPOINT_IN_CACHE`` inside it. We look where a user
of 4D-Humans would already have it, including a Windows home seen from WSL.

Upstream's downloader only checks that the tarball exists, so a truncated
download is never repaired; ``detectors.download`` resumes a partial file and
accepts it only at the size the server announced.
"""
from __future__ import annotations

import glob
import os
import tarfile
import urllib.parse
from pathlib import Path
from typing import Mapping

from detectors.download import download, progress_bar

DEFAULT_URL = "https://people.eecs.berkeley.edu/~jathushan/projects/4dhumans/hmr2_data.tar.gz"
CHECKPOINT_IN_CACHE = Path("logs/train/multiruns/hmr2/0/checkpoints/epoch=35-step=1000000.ckpt")
CACHE_ENV = "POSEBUS_HMR2_CACHE"
CACHE_IN_HOME = Path(".cache/4DHumans")


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
    download(url, tarball, progress=progress_bar(tarball.name))
    with tarfile.open(tarball) as archive:
        archive.extractall(cache_dir, filter="data")  # "data": no absolute paths, links out, or devices
    checkpoint = cache_dir / CHECKPOINT_IN_CACHE
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{tarball} unpacked, but {checkpoint} is not in it")
    return checkpoint
