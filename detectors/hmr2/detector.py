"""HMR 2.0 as a posebus detector: person boxes -> crops -> one batched forward -> Detections.

Person boxes come from a pluggable box source (HMR 2.0 itself needs a box per
person): ``BlazePoseBoxes`` on CPU, ``FasterRcnnBoxes`` on a GPU where
torchvision is installed. All people of all frames in a ``detect`` call go through the network
together, ``batch_size`` crops at a time.

Per person the Detection holds:

- ``bbox``/``score``: the box source's box (x, y, w, h) and confidence;
- ``keypoints_3d``: canonical joints in the full image's camera (metres):
  HMR 2.0's keypoints plus the full-image translation (``pose.camera.cam_crop_to_full``
  with f = 5000/256·max(W, H) and the principal point at the image centre);
- ``keypoints_2d``: those joints projected with the same intrinsics, confidence 1;
- extras ``smpl`` (rotation matrices and betas), ``camera`` (that translation,
  focal length and principal point), ``keypoints_3d_native`` (the 44 HMR 2.0
  keypoints), ``appearance`` (the mean ViT token), and with ``mesh=True``
  ``vertices``. ``keypoints_3d_native`` and ``vertices`` are in the SMPL frame
  without translation, as HMR 2.0 outputs them: add ``camera.translation`` to
  place them in the camera frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from detectors.base import FrameImage
from detectors.hmr2.checkpoint import load_hmr2
from detectors.hmr2.model import Hmr2Config
from detectors.hmr2.preprocess import Crops, crop_people
from detectors.hmr2.reposer import camera_keypoints
from pose.camera import cam_crop_to_full, default_focal, intrinsics
from pose.detection import Detection


@dataclass
class PersonBoxes:
    boxes: np.ndarray  # (N, 4) float32: x1, y1, x2, y2 in pixels
    scores: np.ndarray  # (N,) float32 in [0, 1]


class BoxSource(Protocol):
    def __call__(self, frames: Sequence[FrameImage]) -> list[PersonBoxes]:
        """Frames (their job and index too: a source may follow people across a job's frames) -> the people in each."""
        ...

    def close(self) -> None: ...


class BlazePoseBoxes:
    """The people BlazePose finds in each frame (``detectors.blazepose``, static mode): their landmark boxes;
    with ``second_look``, also the rider where BlazePose misses them (``detectors.second_look``).

    ``score_threshold`` is BlazePose's person-detection confidence; the reported
    score is the landmarks' mean visibility. No minimum box size.
    """

    def __init__(self, score_threshold: float = 0.5, second_look: bool = False):
        from detectors.blazepose import BlazePoseDetector  # only this box source needs mediapipe

        self.detector = BlazePoseDetector(mode="static", min_confidence=score_threshold)
        if second_look:
            from detectors.second_look import with_second_look

            self.detector = with_second_look(self.detector)

    def __call__(self, frames: Sequence[FrameImage]) -> list[PersonBoxes]:
        found = self.detector.detect(frames)
        return [PersonBoxes(np.array([xywh_to_xyxy(p.bbox) for p in people], np.float32).reshape(-1, 4),
                            np.array([p.score for p in people], np.float32)) for people in found]

    def close(self) -> None:
        self.detector.close()


def xywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """(4,) x, y, w, h -> (4,) x1, y1, x2, y2."""
    return np.concatenate([box[:2], box[:2] + box[2:]])


class FasterRcnnBoxes:
    """torchvision's COCO Faster R-CNN (ResNet-50 FPN v2), people only; weights from torchvision's cache."""

    PERSON_LABEL = 1

    def __init__(self, score_threshold: float = 0.5, device: str | torch.device = "cpu"):
        from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2  # optional dependency

        self.score_threshold = score_threshold
        self.device = torch.device(device)
        self.model = fasterrcnn_resnet50_fpn_v2(weights="DEFAULT").eval().to(self.device)

    def __call__(self, frames: Sequence[FrameImage]) -> list[PersonBoxes]:
        batch = [torch.from_numpy(frame.image[:, :, ::-1].copy()).permute(2, 0, 1).to(self.device).float() / 255
                 for frame in frames]
        with torch.inference_mode():
            results = self.model(batch)
        people = []
        for result in results:
            keep = (result["labels"] == self.PERSON_LABEL) & (result["scores"] >= self.score_threshold)
            people.append(PersonBoxes(result["boxes"][keep].cpu().numpy().astype(np.float32),
                                      result["scores"][keep].cpu().numpy().astype(np.float32)))
        return people

    def close(self) -> None:
        pass


BOX_SOURCES = ("auto", "blazepose", "fasterrcnn")


def make_box_source(name: str = "auto", device: str | torch.device = "cpu", score_threshold: float = 0.5,
                    second_look: bool = False) -> BoxSource:
    """A box source by name; "auto" is Faster R-CNN on a GPU when torchvision imports, else BlazePose
    (``second_look``: BlazePose's misses looked at again where the rider is expected)."""
    device = torch.device(device)
    if name == "auto":
        if device.type == "cuda":
            try:
                return FasterRcnnBoxes(score_threshold, device)
            except ImportError:
                pass
        return BlazePoseBoxes(score_threshold, second_look)
    if name == "blazepose":
        return BlazePoseBoxes(score_threshold, second_look)
    if name == "fasterrcnn":
        return FasterRcnnBoxes(score_threshold, device)
    raise ValueError(f"unknown box source {name!r}; choose one of {', '.join(BOX_SOURCES)}")


class Hmr2Detector:
    name = "hmr2"

    def __init__(self, checkpoint: str | Path, *, device: str | torch.device = "cpu",
                 box_source: BoxSource | str = "auto", score_threshold: float = 0.5, batch_size: int = 16,
                 mesh: bool = False, torch_compile: bool = False, config: Hmr2Config | str | Path | None = None,
                 second_look: bool = False):
        """box_source: a BoxSource, or a name in BOX_SOURCES built with score_threshold (and second_look)."""
        self.device = torch.device(device)
        self.model = load_hmr2(checkpoint, self.device, config)
        self.box_source = (make_box_source(box_source, self.device, score_threshold, second_look)
                           if isinstance(box_source, str) else box_source)
        self.batch_size = batch_size
        self.mesh = mesh
        # (13776, 3) vertex indices of the SMPL triangles, sent once per job (job_start) when vertices are.
        self.faces = self.model.smpl.faces_tensor.cpu().numpy().astype(np.int32)
        self.mesh_faces = self.faces if mesh else None
        if torch_compile:
            # The ViT is nearly all the work; SMPL's per-joint loop gains nothing from compiling.
            self.model.backbone.forward_features = torch.compile(self.model.backbone.forward_features, dynamic=True)

    def detect(self, frames: Sequence[FrameImage]) -> list[list[Detection]]:
        if not frames:
            return []
        boxes = self.box_source(frames)
        crops = [crop_people(frame.image, people.boxes) for frame, people in zip(frames, boxes)]
        outputs = self.run(np.concatenate([c.images for c in crops]))
        detections, start = [], 0
        for frame, people, frame_crops in zip(frames, boxes, crops):
            count = len(people.scores)
            frame_outputs = {key: value[start:start + count] for key, value in outputs.items()}
            detections.append(self.frame_detections(frame.image.shape, people, frame_crops, frame_outputs))
            start += count
        return detections

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, 256, 256) crops -> the network outputs as float32 numpy arrays, N rows each."""
        chunks = []
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.device.type == "cuda"):
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

    def frame_detections(self, shape: tuple[int, ...], people: PersonBoxes, crops: Crops,
                         outputs: dict[str, np.ndarray]) -> list[Detection]:
        if not len(people.scores):
            return []
        height, width = shape[:2]
        focal = default_focal(width, height)
        K = intrinsics(width, height, focal)
        img_size = np.tile(np.float32([width, height]), (len(people.scores), 1))
        translations = cam_crop_to_full(outputs["cam"], crops.box_center, crops.box_size, img_size, np.float32(focal))
        detections = []
        for i, (box, score, translation) in enumerate(zip(people.boxes, people.scores, translations)):
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
