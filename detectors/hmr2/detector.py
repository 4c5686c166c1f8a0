"""HMR 2.0 as a posebus detector: person boxes -> guarded boxes -> crops -> batched forwards -> Detections.

Person boxes come from a pluggable box source (``detectors.hmr2.boxes``: ViTDet, Faster R-CNN or
BlazePose). Each box is clipped to the frame and skipped below the minimum size; the people of all
frames given to ``detect`` go through the network together, ``batch_size`` crops at a time, in the
chosen ``precision`` (``detectors.hmr2.precision``). A worker that gathers crops of several frames or
jobs itself calls the three steps apart: ``prepare`` (boxes and crops of some frames), ``run`` (one
batched forward of any crops), ``finish`` (a frame's Detections from its rows of the outputs).

Per person the Detection holds:

- ``bbox``/``score``: the box source's box (x, y, w, h), clipped to the frame, and confidence;
- ``keypoints_3d``: canonical joints in the full image's camera (metres):
  HMR 2.0's keypoints plus the full-image translation (``pose.camera.cam_crop_to_full``
  with the full-image focal of ``pose.camera.image_focal``: the checkpoint's crop focal
  over the longer side, or ``fov``'s, and the principal point at the image centre);
- ``keypoints_2d``: those joints projected with the same intrinsics, confidence 1;
- extras ``smpl`` (rotation matrices and betas), ``camera`` (that translation,
  focal length and principal point), ``keypoints_3d_native`` (the 44 HMR 2.0
  keypoints), ``appearance`` (the mean ViT token), and with ``mesh=True``
  ``vertices``. ``keypoints_3d_native`` and ``vertices`` are in the SMPL frame
  without translation, as HMR 2.0 outputs them: add ``camera.translation`` to
  place them in the camera frame.

A person whose box is skipped, or whose outputs are not finite or put the body behind the camera
(or nearly at infinity: camera scale under ``MIN_CAMERA_SCALE``), is left out and counted by reason
in ``skipped`` (published in the detect stage's metrics).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from detectors.base import FrameImage
from detectors.hmr2 import boxes, precision as precisions
from detectors.hmr2.boxes import (  # noqa: F401 (BlazePoseBoxes: importable from here, as before boxes.py)
    BlazePoseBoxes,
    BoxSource,
    PersonBoxes,
    guard_boxes,
    make_box_source,
    thresholds,
)
from detectors.hmr2.checkpoint import load_hmr2
from detectors.hmr2.model import Hmr2Config
from detectors.hmr2.preprocess import Crops, crop_people
from detectors.hmr2.reposer import camera_keypoints
from pose.camera import cam_crop_to_full, image_focal, intrinsics
from pose.detection import Detection

# The weak-perspective scale of a body filling the crop is about 1; under 0.01 it would stand 100 times
# further than its box says (the released model never gives that for a person), at or below 0 behind the camera.
MIN_CAMERA_SCALE = 0.01
CPU_BATCH_FILL_MS = 250


@dataclass
class PreparedFrame:
    """One frame's people, ready for the network: its kept boxes and their crops."""

    shape: tuple[int, ...]  # the frame's (H, W, 3)
    people: PersonBoxes  # the boxes kept (clipped) and their scores
    crops: Crops


class Hmr2Detector:
    name = "hmr2"

    def __init__(self, checkpoint: str | Path, *, device: str | torch.device = "cpu",
                 box_source: BoxSource | str = "auto", box_preset: str = "demo", box_score: float | None = None,
                 min_box: str | tuple[float, float] | None = None, batch_size: int = 16, mesh: bool = False,
                 precision: str = "fp32", fov: float | None = None, torch_compile: bool = False,
                 config: Hmr2Config | str | Path | None = None, second_look: bool = False,
                 vitdet_weights: str | Path | None = None):
        """box_source: a BoxSource, or a name in ``boxes.BOX_SOURCES``, built with the preset's thresholds
        (``box_score``, ``min_box`` 'WxH' override them; the minimum size applies to any source).
        precision: fp32 (the reference arithmetic, the default here), bf16, int8, or auto (the device's
        default, ``precision.DEFAULTS``; the command line's default). fov: degrees across the frame's longer
        side, for the full-image focal; None: the checkpoint's crop focal over the longer side.
        vitdet_weights: ViTDet's weights file (default: in the checkpoint's 4D-Humans cache, ``vitdet/``)."""
        self.device = torch.device(device)
        self.precision = precisions.resolve(precision, self.device)
        self.model = precisions.prepare(load_hmr2(checkpoint, self.device, config), self.precision)
        self.limits = thresholds(box_preset, box_score, min_box)
        if isinstance(box_source, str):
            if vitdet_weights is None:  # in the checkpoint's 4D-Humans cache
                vitdet_weights = boxes.vitdet_weights(boxes.vitdet_cache(checkpoint))
            box_source = make_box_source(box_source, self.device, self.limits, second_look, vitdet_weights)
        self.box_source = box_source
        self.batch_size = batch_size
        self.mesh = mesh
        self.fov = fov
        self.skipped: Counter[str] = Counter()  # people left out, by reason (module docstring)
        # How long a detect worker waits for one more frame to fill a batch: on a CPU a crop takes
        # seconds and a batch of 4 or more costs about half as much per crop (bench/RESULTS.md).
        self.batch_fill_ms = CPU_BATCH_FILL_MS if self.device.type == "cpu" else 0
        # (13776, 3) vertex indices of the SMPL triangles, sent once per job (job_start) when vertices are.
        self.faces = self.model.smpl.faces_tensor.cpu().numpy().astype(np.int32)
        self.mesh_faces = self.faces if mesh else None
        if torch_compile:
            # The ViT is nearly all the work; SMPL's per-joint loop gains nothing from compiling.
            self.model.backbone.forward_features = torch.compile(self.model.backbone.forward_features, dynamic=True)

    def image_focal(self, width: int, height: int) -> float:
        """The full-image focal length in pixels for a ``width`` × ``height`` frame (the one rule, with fov)."""
        config = self.model.config
        return image_focal(width, height, self.fov, config.focal_length, config.image_size)

    def detect(self, frames: Sequence[FrameImage]) -> list[list[Detection]]:
        if not frames:
            return []
        prepared = self.prepare(frames)
        outputs = self.run(np.concatenate([frame.crops.images for frame in prepared]))
        detections, start = [], 0
        for frame in prepared:
            count = len(frame.people.scores)
            detections.append(self.finish(frame, {key: value[start:start + count] for key, value in outputs.items()}))
            start += count
        return detections

    def prepare(self, frames: Sequence[FrameImage]) -> list[PreparedFrame]:
        """Each frame's people from the box source, through the box guard, and their crops."""
        prepared = []
        for frame, people in zip(frames, self.box_source(frames)):
            height, width = frame.image.shape[:2]
            clipped, reasons = guard_boxes(people.boxes, width, height, self.limits)
            self.skipped.update(reason for reason in reasons if reason)
            kept = np.array([not reason for reason in reasons], bool)
            kept_people = PersonBoxes(clipped[kept], np.asarray(people.scores, np.float32)[kept])
            prepared.append(PreparedFrame(frame.image.shape, kept_people, crop_people(frame.image, kept_people.boxes)))
        return prepared

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, 256, 256) crops, of any frames -> the network outputs as float32 numpy arrays, N rows each,
        ``batch_size`` crops per forward."""
        chunks = []
        with torch.inference_mode(), precisions.autocast(self.precision, self.device):
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(images[start:start + self.batch_size]).to(self.device)
                out = self.model(batch)
                chunks.append({
                    "cam": out["pred_cam"],
                    "global_orient": out["pred_smpl_params"]["global_orient"],
                    "body_pose": out["pred_smpl_params"]["body_pose"],
                    "betas": out["pred_smpl_params"]["betas"],
                    "keypoints_3d": out["pred_keypoints_3d"],
                    "appearance": out["appearance"],
                    **({"vertices": out["pred_vertices"]} if self.mesh else {}),
                })
        if not chunks:
            return {}
        return {key: torch.cat([c[key] for c in chunks]).float().cpu().numpy() for key in chunks[0]}

    def finish(self, frame: PreparedFrame, outputs: dict[str, np.ndarray]) -> list[Detection]:
        """A prepared frame's Detections from its rows of ``run``'s outputs; people whose outputs fail the
        guard are counted in ``skipped`` and left out."""
        people = frame.people
        if not len(people.scores):
            return []
        height, width = frame.shape[:2]
        focal = self.image_focal(width, height)
        K = intrinsics(width, height, focal)
        img_size = np.tile(np.float32([width, height]), (len(people.scores), 1))
        translations = cam_crop_to_full(outputs["cam"], frame.crops.box_center, frame.crops.box_size, img_size,
                                        np.float32(focal))
        detections = []
        for i, (box, score, translation) in enumerate(zip(people.boxes, people.scores, translations)):
            reason = output_problem({key: value[i] for key, value in outputs.items()}, translation)
            if reason:
                self.skipped[reason] += 1
                continue
            native = outputs["keypoints_3d"][i]
            keypoints_3d, keypoints_2d = camera_keypoints(native, translation, K)
            extras = {
                "smpl": {"global_orient": outputs["global_orient"][i], "body_pose": outputs["body_pose"][i],
                         "betas": outputs["betas"][i]},
                "camera": {"translation": translation.astype(np.float32), "focal_length": float(focal),
                           "principal_point": np.float32([width / 2, height / 2])},
                "keypoints_3d_native": native,
                "appearance": outputs["appearance"][i],
            }
            if self.mesh:
                extras["vertices"] = outputs["vertices"][i]
            detections.append(Detection(bbox=np.float32([box[0], box[1], box[2] - box[0], box[3] - box[1]]),
                                        score=float(score), keypoints_2d=keypoints_2d,
                                        keypoints_3d=keypoints_3d, extras=extras))
        return detections

    def close(self) -> None:
        self.box_source.close()


def output_problem(outputs: dict[str, np.ndarray], translation: np.ndarray) -> str:
    """Why one person's network outputs must not be published ("" when they may)."""
    if not all(np.isfinite(value).all() for value in outputs.values()) or not np.isfinite(translation).all():
        return "output_not_finite"
    if outputs["cam"][0] < MIN_CAMERA_SCALE:
        return "camera_scale"
    return ""
