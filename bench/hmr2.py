"""HMR 2.0 network speed on this machine: ``python -m bench.hmr2``.

Times ``HMR2.forward`` (backbone, head, SMPL) on random crops, not the box
source or cropping, and prints a markdown table:

- the small parity model (fixture checkpoint) at batch 1, 4, 16: crops per second;
- the full-size ViT-H network with random weights (no checkpoint needed) at batch 1:
  seconds per crop. Random weights cost the same arithmetic as the released ones.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import torch

from detectors.hmr2.checkpoint import load_hmr2
from detectors.hmr2.model import HMR2, Hmr2Config

SMALL_CHECKPOINT = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "hmr2" / "small_checkpoint.ckpt"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def seconds_per_batch(model: HMR2, batch: int, min_seconds: float, min_runs: int) -> float:
    """Mean over at least min_runs forwards and min_seconds, after one warm-up forward."""
    crops = torch.randn(batch, 3, 256, 256)
    with torch.inference_mode():
        model(crops)
        runs, start = 0, time.perf_counter()
        while runs < min_runs or time.perf_counter() - start < min_seconds:
            model(crops)
            runs += 1
    return (time.perf_counter() - start) / runs


def full_size_model(smpl_source: HMR2) -> HMR2:
    """ViT-H HMR 2.0 with random weights; SMPL buffers borrowed so skinning runs on real numbers."""
    torch.manual_seed(0)
    model = HMR2(Hmr2Config())
    model.smpl.load_state_dict(smpl_source.smpl.state_dict())
    return model.requires_grad_(False).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=SMALL_CHECKPOINT, help="small parity checkpoint")
    parser.add_argument("--full-crops", type=int, default=2, help="timed ViT-H forwards (after one warm-up)")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timing per small-model row")
    args = parser.parse_args()

    small = load_hmr2(args.checkpoint)
    rows = []
    for batch in (1, 4, 16):
        seconds = seconds_per_batch(small, batch, args.seconds, min_runs=3)
        rows.append(("small (ViT 64×2, decoder 2 layers)", batch, batch / seconds, seconds / batch))
    full = full_size_model(small)
    seconds = seconds_per_batch(full, 1, 0.0, min_runs=args.full_crops)
    rows.append(("full ViT-H (random weights)", 1, 1 / seconds, seconds))

    print(f"HMR 2.0 forward, CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"{datetime.date.today().isoformat()}\n")
    print("| model | batch | crops/s | s/crop |")
    print("|---|---:|---:|---:|")
    for name, batch, rate, per_crop in rows:
        print(f"| {name} | {batch} | {rate:.2f} | {per_crop:.4f} |")


if __name__ == "__main__":
    main()
