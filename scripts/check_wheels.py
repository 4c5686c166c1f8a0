"""Every dependency installs from a wheel on each supported Python: resolve the whole dependency set
(pyproject.toml's dependencies and all its extras, plus any requirement given on the command line) for
CPython 3.10-3.14 on Linux x86_64, wheels only, and name the package that has none.

    python scripts/check_wheels.py 'mediapipe>=1.2.3,<2'      # what `make check-wheels` runs

It needs no interpreter of those versions: uv resolves for a target Python and platform, and evaluates
dependency markers (``tomli; python_version < "3.11"``) for that target, which pip's ``--python-version``
does not (pip evaluates them for the Python running it). Only metadata is fetched; uv's cache
(~/.cache/uv, UV_CACHE_DIR) makes a second run fast. The index is uv's default, PyPI, whatever pip is
configured with here: the question is what a fresh machine gets (UV_DEFAULT_INDEX points it at a mirror).
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# The oldest glibc the set must run on: torch's wheels are manylinux_2_28 (Debian 10, RHEL 8, Ubuntu 20.04 and later).
PLATFORM = "x86_64-manylinux_2_28"
ROOT = Path(__file__).resolve().parent.parent
# uv's explanations name the culprit in one of these forms.
CULPRIT = re.compile(r"(\S+) (?:has no (?:usable )?wheels|was not found in the package registry)")


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        sys.exit("uv not found: pip install uv (the dev extra has it)")
    return found


@dataclass
class Resolution:
    python: str
    returncode: int
    lock: str  # uv's ``name==version`` lines
    explanation: str  # uv's stderr: why it failed
    seconds: float


def resolve(python: str, sources: list[str], platform: str) -> Resolution:
    command = [uv(), "pip", "compile", "--quiet", "--no-config", "--no-header", "--no-annotate", "--all-extras",
               "--only-binary", ":all:", "--python-version", python, "--python-platform", platform, *sources]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return Resolution(python, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def pinned(lock: str) -> dict[str, str]:
    """{name: version} from uv's ``name==version`` lines."""
    return dict(line.split("==", 1) for line in lock.splitlines() if "==" in line and not line.startswith("#"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", nargs="*", help="requirements installed besides pyproject.toml's")
    parser.add_argument("--python", action="append", choices=PYTHONS, help="check only these (default: all)")
    parser.add_argument("--platform", default=PLATFORM, help=f"uv's --python-platform (default {PLATFORM})")
    parser.add_argument("--show", metavar="NAMES", default="numpy,opencv-python-headless,mediapipe,torch",
                        help="comma-separated packages whose resolved versions to print")
    args = parser.parse_args()
    pythons = args.python or PYTHONS
    with tempfile.NamedTemporaryFile("w", suffix=".in") as extra:
        extra.write("\n".join(args.requirements) + "\n")
        extra.flush()
        started = time.monotonic()
        with ThreadPoolExecutor(len(pythons)) as pool:  # in parallel: each waits mostly on the index
            resolutions = list(pool.map(lambda python: resolve(python, ["pyproject.toml", extra.name], args.platform),
                                        pythons))
    failed = []
    for resolution in resolutions:
        if resolution.returncode == 0:
            versions = pinned(resolution.lock)
            shown = " ".join(f"{name} {versions[name]}" for name in args.show.split(",") if name in versions)
            print(f"Python {resolution.python}: {len(versions)} packages, all wheels "
                  f"({resolution.seconds:.1f} s): {shown}")
            continue
        culprits = sorted(set(CULPRIT.findall(resolution.explanation)))
        print(f"Python {resolution.python}: FAILED, no wheel: {', '.join(culprits) or 'see below'}")
        print("    " + resolution.explanation.strip().replace("\n", "\n    "))
        failed.append(resolution.python)
    print(f"{len(pythons) - len(failed)}/{len(pythons)} Python versions resolve as wheels for {args.platform} "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
