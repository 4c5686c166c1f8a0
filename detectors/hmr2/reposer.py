"""HMR 2.0's values that follow from its SMPL parameters, derived again from tracked parameters.

A detection's ``keypoints_3d_native`` and ``vertices`` are SMPL posed with its ``global_orient``,
``body_pose`` and ``betas``; its ``keypoints_3d`` are those keypoints moved by ``camera.translation``
(canonical joints) and its ``keypoints_2d`` their projection (``camera_keypoints``). The track stage
smooths and fills (interpolates, predicts) every field on its own, which would break those relations:
on vid.mp4 with the test checkpoint, smoothed native keypoints were up to 4.4 cm from SMPL posed with
the smoothed parameters. ``Reposer`` poses SMPL with the parameters the tracker publishes and derives
the rest from them, as ``Hmr2Detector`` does, so every published value is one body.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detectors.hmr2.checkpoint import load_smpl
from detectors.hmr2.smpl import SMPL
from detectors.hmr2.weights import find_checkpoint
from pose.camera import project
from pose.detection import Detection
from pose.skeleton import HMR2_TO_CANONICAL, available, to_canonical


def camera_keypoints(native: np.ndarray, translation: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HMR 2.0's 44 keypoints (44, 3) in the SMPL frame, the camera translation (3,) and K (3, 3)
    -> canonical keypoints_3d (J, 3) in the camera frame and keypoints_2d (J, 3): pixels and 1 where present."""
    keypoints_3d = to_canonical(native + translation, HMR2_TO_CANONICAL)
    present = available(keypoints_3d)
    return keypoints_3d, np.concatenate([project(keypoints_3d, K), present[:, None]], axis=1).astype(np.float32)


def camera_matrix(camera: dict) -> np.ndarray:
    """K (3, 3) of a detection's ``camera`` extras (focal length and principal point, pixels)."""
    f, (cx, cy) = float(camera["focal_length"]), np.asarray(camera["principal_point"], dtype=np.float64)
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


class Reposer:
    """Detections -> the same detections with their SMPL-derived values recomputed from their SMPL parameters."""

    def __init__(self, smpl: SMPL):
        self.smpl = smpl

    def __call__(self, detections: list[Detection]) -> list[Detection]:
        posed = [d for d in detections if "smpl" in d.extras]
        if not posed:
            return detections

        def stacked(key: str) -> torch.Tensor:
            return torch.from_numpy(np.array([d.extras["smpl"][key] for d in posed], dtype=np.float32))

        # A few small matrix products: torch's thread pool costs more than it gains, 5-10x on a busy machine.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                vertices, native = self.smpl(stacked("global_orient"), stacked("body_pose"), stacked("betas"))
        finally:
            torch.set_num_threads(threads)
        out = iter(zip(vertices.numpy(), native.numpy()))
        return [self._derived(d, *next(out)) if "smpl" in d.extras else d for d in detections]

    @staticmethod
    def _derived(d: Detection, vertices: np.ndarray, native: np.ndarray) -> Detection:
        camera = d.extras["camera"]
        keypoints_3d, keypoints_2d = camera_keypoints(native, camera["translation"], camera_matrix(camera))
        extras = {**d.extras, "keypoints_3d_native": native}
        if "vertices" in extras:
            extras["vertices"] = vertices
        return Detection(d.bbox, d.score, keypoints_2d, keypoints_3d, extras)


def find_reposer(checkpoint: str | Path | None = None) -> Reposer | None:
    """The Reposer of ``checkpoint``, or of the one in the 4D-Humans cache; None if there is none."""
    found, _ = find_checkpoint(checkpoint)
    return None if found is None else Reposer(load_smpl(found))
