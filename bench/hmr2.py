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
import copy
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


def timed(model: HMR2, crops: torch.Tensor, precision: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one forward."""
    wall, cpu = time.perf_counter(), time.process_time()
    forward(model, crops, precision)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(models: dict[str, HMR2], crops: torch.Tensor, batch_sizes: tuple[int, ...], rounds: int,
                min_seconds: float = 0.0, warm_up: bool = True) -> dict[tuple[str, int], tuple[float, float]]:
    """(precision, batch) -> (wall, CPU) seconds per crop of the fastest forward; every round times each row
    once, in turn, so that load from other processes falls on every row alike (after one warm-up forward
    of each). CPU seconds count what the forward itself ran, whatever else ran beside it."""
    for precision, model in models.items() if warm_up else ():
        forward(model, batches(crops, max(batch_sizes)), precision)
    best: dict[tuple[str, int], tuple[float, float]] = {}
    started, done = time.perf_counter(), 0
    while done < rounds or time.perf_counter() - started < min_seconds:
        for precision, model in models.items():
            for batch in batch_sizes:
                wall, cpu = timed(model, batches(crops, batch), precision)
                old = best.get((precision, batch), (wall / batch, cpu / batch))
                best[precision, batch] = (min(old[0], wall / batch), min(old[1], cpu / batch))
        done += 1
    return best


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
    models = {precision: precisions.prepare(load_hmr2(checkpoint), precision) for precision in precisions.PRECISIONS}
    reference = forward(models["fp32"], crops, "fp32")
    error = {precision: precisions.errors(reference, forward(model, crops, precision))
             for precision, model in models.items()}
    speed = interleaved(models, crops, (1, 4, 16), rounds=3, min_seconds=seconds)
    return [{"precision": precision, "batch": batch, "s_per_crop": wall, "cpu_s_per_crop": cpu, **error[precision]}
            for (precision, batch), (wall, cpu) in speed.items()]


def full_rows(smpl_source: HMR2, rounds: int) -> list[dict]:
    """fp32 and bf16 on one ViT-H, int8 on a quantised copy (both in memory, so that rounds interleave)."""
    _, real = fixture_crops()
    exact = full_size_model(smpl_source)
    models = {"fp32": exact, "bf16": exact, "int8": precisions.prepare(copy.deepcopy(exact), "int8")}
    reference = forward(exact, real, "fp32")
    error = {precision: precisions.errors(reference, forward(model, real, precision) if precision != "fp32"
                                          else reference) for precision, model in models.items()}
    speed = interleaved(models, real, (1, 4), rounds, warm_up=False)  # the forwards above warmed each up
    return [{"precision": precision, "batch": batch, "s_per_crop": wall, "cpu_s_per_crop": cpu, **error[precision]}
            for (precision, batch), (wall, cpu) in speed.items()]


def table(rows: list[dict], bounds: dict[str, precisions.ErrorBound]) -> list[str]:
    base = next(r for r in rows if r["precision"] == "fp32" and r["batch"] == 1)
    lines = ["| precision | batch | crops/s | s/crop | CPU s/crop | × fp32 batch 1 (wall) | × (CPU) "
             "| keypoints max err mm | camera scale max err | rotation max err | within bound |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        error = {name: r[name] for name in ("keypoints_m", "camera_scale", "rotation")}
        lines.append(f"| {r['precision']} | {r['batch']} | {1 / r['s_per_crop']:.2f} | {r['s_per_crop']:.4f} | "
                     f"{r['cpu_s_per_crop']:.4f} | {base['s_per_crop'] / r['s_per_crop']:.2f} | "
                     f"{base['cpu_s_per_crop'] / r['cpu_s_per_crop']:.2f} | {r['keypoints_m'] * 1000:.2f} | "
                     f"{r['camera_scale'] * 100:.3f}% | {r['rotation']:.4f} | "
                     f"{'yes' if precisions.within(bounds[r['precision']], error) else 'NO'} |")
    return lines


def projection(rows: list[dict]) -> list[str]:
    lines = [f"Projected network time for a {CLIP_FRAMES}-frame clip with one person (one crop a frame), "
             "at each precision's fastest measured batch:", ""]
    for precision in precisions.PRECISIONS:
        best = min((r for r in rows if r["precision"] == precision), key=lambda r: r["s_per_crop"])
        total, cpu = CLIP_FRAMES * best["s_per_crop"], CLIP_FRAMES * best["cpu_s_per_crop"]
        lines.append(f"- {precision} (batch {best['batch']}): {total:.0f} s ({total / 60:.1f} min) as measured; "
                     f"{cpu / torch.get_num_threads():.0f} s from its CPU seconds over {torch.get_num_threads()} "
                     f"threads (an otherwise idle machine)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=SMALL_CHECKPOINT, help="small parity checkpoint")
    parser.add_argument("--full-rounds", type=int, default=2, help="timed ViT-H forwards per row, interleaved "
                                                                     "(after a warm-up); the fastest is kept")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per small-model row")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size network (minutes)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    small = small_rows(args.checkpoint, args.seconds)
    full = [] if args.no_full else full_rows(load_hmr2(args.checkpoint), args.full_rounds)
    print(f"HMR 2.0 forward, CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"{datetime.date.today().isoformat()}; load average (1 min) {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after. No GPU here: CUDA rows are not measured.\n")
    print("Errors are against fp32 on the same weights and crops, the largest over all crops; precision "
          "int8 quantises the ViT's Linear layers only (detectors/hmr2/precision.py).\n")
    print("### Small parity model (ViT 64×2, decoder 2 layers; fixture weights; 7 fixture crops)\n")
    print("\n".join(table(small, precisions.ERROR_BOUNDS)))
    if full:
        print(f"\n### Full-size ViT-H (random weights; 4 real crops; fastest of {args.full_rounds} interleaved "
              f"forwards a row)\n")
        print("\n".join(table(full, precisions.FULL_SIZE_ERROR_BOUNDS)))
        print("\n" + "\n".join(projection(full)))


if __name__ == "__main__":
    main()
