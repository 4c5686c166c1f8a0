"""The arithmetic HMR 2.0's network runs in: ``fp32``, ``bf16`` or ``int8``; SMPL skinning stays float32.

- ``fp32``: the reference (the parity fixture holds it to 1e-5 of the official code).
- ``bf16``: autocast to bfloat16 (matrix products and convolutions); on CPU and CUDA.
- ``int8``: dynamic quantisation of every ``nn.Linear`` of the ViT (weights int8 per tensor, activations
  quantised per batch at run time); CPU only (torch has no CUDA kernels for it). The patch convolution,
  LayerNorms, attention products and the whole SMPL head stay float32: the head is ~1% of the arithmetic
  and quantising it too doubles to quadruples the error on the fixture (bench/RESULTS.md).

What each mode may cost against fp32 is measured (``python -m bench.hmr2``, bench/RESULTS.md) on the
parity fixture's small model (known weights) and on the full-size network with random weights, as the
largest difference over the 44 keypoints (metres, SMPL frame), the camera scale (relative) and the rotation
matrices' entries; ``ERROR_BOUNDS`` and ``FULL_SIZE_ERROR_BOUNDS`` are those numbers with margin.
``tests/test_hmr2_precision.py`` holds each mode to its bound on the fixture; the bench checks the full size.
The released weights were not available to measure: a 32-block network with random weights amplifies
rounding more than trained ones usually do, so the full-size bounds are likely pessimistic.
``DEFAULTS`` picks per device the fastest mode within bound (the CPU's: ≥ 3× fp32 batch 1 on ViT-H).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class ErrorBound:
    keypoints_m: float  # max |Δ| of the 44 keypoints in metres (SMPL frame, without translation)
    camera_scale: float  # max relative |Δs| / s of the weak-perspective camera scale
    rotation: float  # max |Δ| of any rotation-matrix entry (global orient and body pose)


# Measured on the fixture: bf16 8.6 mm, 0.024 %, 0.027; int8 6.3 mm, 0.046 %, 0.023.
ERROR_BOUNDS = {
    "fp32": ErrorBound(keypoints_m=1e-5, camera_scale=1e-5, rotation=1e-5),
    "bf16": ErrorBound(keypoints_m=0.015, camera_scale=0.002, rotation=0.05),
    "int8": ErrorBound(keypoints_m=0.015, camera_scale=0.002, rotation=0.05),
}
# Measured on ViT-H with random weights (4 real crops): bf16 39 mm, 3.5 %, 0.10; int8 81 mm, 7.2 %, 0.20.
FULL_SIZE_ERROR_BOUNDS = {
    "fp32": ErrorBound(keypoints_m=1e-4, camera_scale=1e-4, rotation=1e-4),
    "bf16": ErrorBound(keypoints_m=0.06, camera_scale=0.05, rotation=0.15),
    "int8": ErrorBound(keypoints_m=0.12, camera_scale=0.10, rotation=0.30),
}
# The fastest mode within bound, per device type (bench/RESULTS.md, precision × batch).
DEFAULTS = {"cpu": "int8", "cuda": "bf16"}


def errors(reference: dict, outputs: dict) -> dict[str, float]:
    """The ``ErrorBound`` quantities of ``outputs`` against ``reference``, both ``HMR2.forward`` dictionaries
    (tensors or arrays) of the same crops: the largest over all crops."""
    def array(value):
        return value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)

    def rotations(out):
        smpl = out["pred_smpl_params"]
        return np.concatenate([array(smpl["global_orient"]), array(smpl["body_pose"])], axis=1)

    scale, scale_ref = array(outputs["pred_cam"])[:, 0], array(reference["pred_cam"])[:, 0]
    return {
        "keypoints_m": float(np.abs(array(outputs["pred_keypoints_3d"]) - array(reference["pred_keypoints_3d"])).max()),
        "camera_scale": float(np.abs(scale / scale_ref - 1).max()),
        "rotation": float(np.abs(rotations(outputs) - rotations(reference)).max()),
    }


def within(bound: ErrorBound, measured: dict[str, float]) -> bool:
    return all(measured[name] <= getattr(bound, name) for name in measured)


def resolve(precision: str, device: torch.device) -> str:
    """``auto`` -> the device's default; refuses a mode the device cannot run."""
    if precision == "auto":
        return DEFAULTS.get(device.type, "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"--precision int8 runs on the CPU only (torch's dynamic quantisation), not {device}")
    return precision


def prepare(model: nn.Module, precision: str) -> nn.Module:
    """The model ready for ``precision``: int8 swaps the ViT's Linear layers in place."""
    if precision == "int8":
        with warnings_silenced():
            torch.ao.quantization.quantize_dynamic(model.backbone, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a forward runs in."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def warnings_silenced():
    """torch 2.x marks eager quantisation deprecated (moving to torchao) but runs it; keep the log clean."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize.*")
        yield
