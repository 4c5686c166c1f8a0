"""Run benches and assemble bench/RESULTS.md: ``python -m bench [NAME ...]`` (default: all).

Each bench runs alone as ``python -m bench.NAME``; its markdown (stdout) is
kept as bench/results/NAME.md with a line saying when it ran and how loaded
the machine was. RESULTS.md then gathers every bench/results/*.md, including
those of benches not run this time, under a header describing the machine.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

from bench.timing import RESULTS, ROOT

# about 1, 3, 1, 4-6.5 (on 2 loaded cores), 0.5, 6, 12, 10, 3.5, 4 and 5 min
BENCHES = ["transport", "pipeline", "latency", "hmr2", "tracking", "blazepose", "recall", "blackout", "upload",
           "overlay", "concurrency"]
ON_REQUEST = ["gpu"]  # run only when named: on a machine without a GPU it measures a tiny model
PACKAGES = ["pyzmq", "msgpack", "numpy", "opencv-python-headless", "av", "mediapipe", "torch", "flask"]


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        kib = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    return kib / 2**20


def package_versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    import zmq

    return ", ".join(found) + f" (libzmq {zmq.zmq_version()})"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def header() -> str:
    return "\n\n".join([
        "# posebus benchmarks",
        f"- assembled: {now():%a %b %d %H:%M:%S UTC %Y}; each section says when it ran\n"
        f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, {memory_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.machine()}, no GPU used\n"
        f"- software: Python {platform.python_version()}, {package_versions()}\n"
        "- other tenants' jobs share these CPUs (the load average is in each section's run line): treat "
        "differences under ~25% between runs as noise; ratios measured side by side in one run hold better",
        "Regenerate with `python -m bench` (all) or `python -m bench NAME ...`; "
        "each section is also in bench/results/NAME.md.",
    ])


def run_bench(name: str) -> bool:
    print(f"bench.{name} ...", file=sys.stderr)
    started, load_before = now(), os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        print(f"bench.{name} failed (exit {done.returncode}); its old results are kept", file=sys.stderr)
        return False
    section = done.stdout.strip()
    if not section.startswith("#"):
        section = f"## {name}\n\n{section}"
    heading, _, body = section.partition("\n")
    seconds = (now() - started).total_seconds()
    section = (f"{heading}\n\n_Run {started:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s; load average (1 min) "
               f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after._\n{body}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(section + "\n")
    return True


def assemble() -> None:
    found = {path.stem: path for path in RESULTS.glob("*.md")}
    order = [name for name in BENCHES if name in found] + sorted(set(found) - set(BENCHES))
    sections = [found[name].read_text().strip() for name in order]
    (ROOT / "bench" / "RESULTS.md").write_text("\n\n".join([header(), *sections]) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHES + ON_REQUEST))
    names = parser.parse_args().names or BENCHES
    unknown = sorted(set(names) - set(BENCHES + ON_REQUEST))
    if unknown:
        parser.error(f"no bench {', '.join(unknown)} (known: {', '.join(BENCHES + ON_REQUEST)})")
    failed = [name for name in names if not run_bench(name)]
    assemble()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
