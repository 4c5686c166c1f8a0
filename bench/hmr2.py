"""HMR 2.0 network speed and precision on this machine: ``python -m bench.hmr2``.

Times ``HMR2.forward`` (backbone, head, SMPL) in each precision (``detectors.hmr2.precision``) and batch
size, not the box source or cropping, and measures each precision's error against fp32 on the same
weights and crops (``precision.errors``: keypoints in mm, camera scale relative, rotation-matrix entries):

- the small parity model (fixture checkpoint, real known weights) on the fixture's 7 crops
  (io.npz and preprocess.npz: real crops of vid.mp4 and a noise image), batch 1, 4, 16;
- the full-size ViT-H network with random weights (no checkpoint needed; the same arithmetic as the
  released model) on preprocess.npz's 4 real crops, batch 1 and 4.

It prints markdown: one precision × batch table per model, and the projected network time of a
140-frame one-person clip (one crop a frame) per precision at its best measured batch.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from detectors.hmr2 import precision as precisions
from detectors.hmr2.checkpoint import load_hmr2
from detectors.hmr2.model import HMR2, Hmr2Config

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "hmr2"
SMALL_CHECKPOINT = FIXTURES / "small_checkpoint.ckpt"
CLIP_FRAMES = 140
CPU = torch.device("cpu")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fixture_crops() -> tuple[torch.Tensor, torch.Tensor]:
    """(7, 3, 256, 256) every fixture crop, and (4, ...) the real crops of preprocess.npz."""
    real = torch.from_numpy(np.load(FIXTURES / "preprocess.npz")["img"])
    return torch.cat([torch.from_numpy(np.load(FIXTURES / "io.npz")["img"]), real]), real


def forward(model: HMR2, crops: torch.Tensor, precision: str) -> dict:
    with torch.inference_mode(), precisions.autocast(precision, CPU):
        return model(crops)


def seconds_per_batch(model: HMR2, crops: torch.Tensor, precision: str, min_seconds: float, min_runs: int,
                      warm_up: bool = True) -> float:
    """Mean over at least min_runs forwards and min_seconds (after one warm-up forward)."""
    if warm_up:
        forward(model, crops, precision)
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        forward(model, crops, precision)
        runs += 1
    return (time.perf_counter() - start) / runs


def full_size_model(smpl_source: HMR2) -> HMR2:
    """ViT-H HMR 2.0 with random weights; SMPL buffers borrowed so skinning runs on real numbers."""
    torch.manual_seed(0)
    model = HMR2(Hmr2Config())
    model.smpl.load_state_dict(smpl_source.smpl.state_dict())
    return model.requires_grad_(False).eval()


def batches(crops: torch.Tensor, batch: int) -> torch.Tensor:
    """``batch`` crops, repeating the given ones as needed."""
    return crops[torch.arange(batch) % len(crops)]


def small_rows(checkpoint: Path, seconds: float) -> list[dict]:
    crops, _ = fixture_crops()
    reference = forward(load_hmr2(checkpoint), crops, "fp32")
    rows = []
    for precision in precisions.PRECISIONS:
        model = precisions.prepare(load_hmr2(checkpoint), precision)
        error = precisions.errors(reference, forward(model, crops, precision))
        for batch in (1, 4, 16):
            per_batch = seconds_per_batch(model, batches(crops, batch), precision, seconds, min_runs=3)
            rows.append({"precision": precision, "batch": batch, "s_per_crop": per_batch / batch, **error})
    return rows


def full_rows(smpl_source: HMR2, runs: int) -> list[dict]:
    """fp32 and bf16 on one model, then int8 on it quantised in place (one ViT-H in memory at a time)."""
    _, real = fixture_crops()
    model = full_size_model(smpl_source)
    reference = forward(model, real, "fp32")
    rows = []
    for precision in precisions.PRECISIONS:
        precisions.prepare(model, precision)
        outputs = reference if precision == "fp32" else forward(model, real, precision)  # batch 4: the warm-up
        error = precisions.errors(reference, outputs)
        for batch in (1, 4):
            per_batch = seconds_per_batch(model, real[:batch], precision, 0.0, runs, warm_up=batch == 1)
            rows.append({"precision": precision, "batch": batch, "s_per_crop": per_batch / batch, **error})
    return rows


def table(rows: list[dict]) -> list[str]:
    baseline = next(r["s_per_crop"] for r in rows if r["precision"] == "fp32" and r["batch"] == 1)
    lines = ["| precision | batch | crops/s | s/crop | × fp32 batch 1 | keypoints max err mm | camera scale max err "
             "| rotation max err |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['batch']} | {1 / r['s_per_crop']:.2f} | {r['s_per_crop']:.4f} | "
                     f"{baseline / r['s_per_crop']:.2f} | {r['keypoints_m'] * 1000:.2f} | "
                     f"{r['camera_scale'] * 100:.3f}% | {r['rotation']:.4f} |")
    return lines


def projection(rows: list[dict]) -> list[str]:
    lines = [f"Projected network time for a {CLIP_FRAMES}-frame clip with one person (one crop a frame), "
             "at each precision's fastest measured batch:", ""]
    for precision in precisions.PRECISIONS:
        best = min((r for r in rows if r["precision"] == precision), key=lambda r: r["s_per_crop"])
        total = CLIP_FRAMES * best["s_per_crop"]
        lines.append(f"- {precision} (batch {best['batch']}): {total:.0f} s ({total / 60:.1f} min)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=SMALL_CHECKPOINT, help="small parity checkpoint")
    parser.add_argument("--full-runs", type=int, default=1, help="timed ViT-H forwards per row (after a warm-up)")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per small-model row")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size network (minutes)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    small = small_rows(args.checkpoint, args.seconds)
    full = [] if args.no_full else full_rows(load_hmr2(args.checkpoint), args.full_runs)
    print(f"HMR 2.0 forward, CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"{datetime.date.today().isoformat()}; load average (1 min) {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after. No GPU here: CUDA rows are not measured.\n")
    print("Errors are against fp32 on the same weights and crops, the largest over all crops; precision "
          "int8 quantises the ViT's Linear layers only (detectors/hmr2/precision.py).\n")
    print("### Small parity model (ViT 64×2, decoder 2 layers; fixture weights; 7 fixture crops)\n")
    print("\n".join(table(small)))
    if full:
        print(f"\n### Full-size ViT-H (random weights; 4 real crops; {args.full_runs} timed forward(s) a row)\n")
        print("\n".join(table(full)))
        print("\n" + "\n".join(projection(full)))


if __name__ == "__main__":
    main()
