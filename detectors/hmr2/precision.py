"""The arithmetic HMR 2.0's network runs in: ``fp32``, ``bf16`` or ``int8``; SMPL skinning stays float32.

- ``fp32``: the reference (the parity fixture holds it to 1e-5 of the official code).
- ``bf16``: autocast to bfloat16 (matrix products and convolutions); on CPU and CUDA.
- ``int8``: dynamic quantisation of every ``nn.Linear`` of the ViT (weights int8 per tensor, activations
  quantised per batch at run time); CPU only (torch has no CUDA kernels for it). The patch convolution,
  LayerNorms, attention products and the whole SMPL head stay float32: the head is ~1% of the arithmetic
  and quantising it too doubles to quadruples the error on the fixture (bench/RESULTS.md).

``ERROR_BOUNDS`` are what each mode may cost against fp32, measured on the parity fixture's small model
(real known weights) and on the full-size network with random weights (``python -m bench.hmr2``,
bench/RESULTS.md): the largest difference over the keypoints (metres, SMPL frame), the camera scale
(relative) and the rotation matrices. ``tests/test_hmr2_precision.py`` holds each mode to its bound on the
fixture. ``DEFAULTS`` picks per device the fastest mode measured within bound.
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


# Measured on the fixture (tests/test_hmr2_precision.py) with margin; bench/RESULTS.md has the numbers.
ERROR_BOUNDS = {
    "fp32": ErrorBound(keypoints_m=1e-5, camera_scale=1e-5, rotation=1e-5),
    "bf16": ErrorBound(keypoints_m=0.05, camera_scale=0.05, rotation=0.1),
    "int8": ErrorBound(keypoints_m=0.05, camera_scale=0.05, rotation=0.1),
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
