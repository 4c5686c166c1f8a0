"""Person boxes for HMR 2.0 (the network needs one box per person): the box sources, their thresholds, the guard.

Sources, in the order ``auto`` tries them:

- ``vitdet``: 4D-Humans' own detector, detectron2's Cascade Mask R-CNN with a ViT-H backbone, where
  detectron2 imports (it is not on PyPI; see docs/outputs.md, "Differences from 4D-Humans");
- ``fasterrcnn``: torchvision's COCO Faster R-CNN, on a GPU where torchvision imports;
- ``blazepose``: BlazePose's landmark extents (MediaPipe), everywhere else.

Thresholds come as a preset: ``demo`` (4D-Humans' demo.py: score > 0.5) or ``track`` (its track.py, through
PHALP: score > 0.8, boxes under 50 × 100 px dropped); ``--box-score`` and ``--min-box`` override either.
Whatever the source, ``guard_boxes`` clips each box to the image and skips those below the minimum size:
a zero-width box would make an all-black crop and a camera ~1e13 m away, a tiny one an upsampled blur.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from detectors.base import FrameImage
from options import pixel_size


@dataclass
class PersonBoxes:
    boxes: np.ndarray  # (N, 4) float32: x1, y1, x2, y2 in pixels
    scores: np.ndarray  # (N,) float32 in [0, 1]


class BoxSource(Protocol):
    def __call__(self, frames: Sequence[FrameImage]) -> list[PersonBoxes]:
        """Frames (their job and index too: a source may follow people across a job's frames) -> the people in each."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BoxThresholds:
    score: float  # keep people the source scores above this
    min_width: float  # pixels, after clipping to the image
    min_height: float
    vitdet_score: float  # ViTDet's own box-head threshold (before the person filter), as 4D-Humans sets it


# The minimum of ``demo`` is posebus's guard (upstream has none): it only stops degenerate boxes.
PRESETS = {
    "demo": BoxThresholds(score=0.5, min_width=8.0, min_height=8.0, vitdet_score=0.25),  # demo.py
    "track": BoxThresholds(score=0.8, min_width=50.0, min_height=100.0, vitdet_score=0.5),  # track.py + PHALP
}


def thresholds(preset: str = "demo", score: float | None = None, min_size: str | tuple | None = None) -> BoxThresholds:
    """A preset's thresholds, with ``score`` and ``min_size`` ('WxH' or (W, H)) overriding its own."""
    if preset not in PRESETS:
        raise ValueError(f"unknown box preset {preset!r}; choose one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    if score is not None:
        chosen = replace(chosen, score=float(score))
    if min_size is not None:
        width, height = pixel_size(min_size) if isinstance(min_size, str) else min_size
        chosen = replace(chosen, min_width=float(width), min_height=float(height))
    return chosen


def guard_boxes(boxes: np.ndarray, width: int, height: int, limits: BoxThresholds) -> tuple[np.ndarray, list[str]]:
    """Boxes (N, 4) x1 y1 x2 y2 -> (N, 4) clipped to the ``width`` × ``height`` image, and per box the reason it
    is skipped ("" where kept): ``box_not_finite``, ``box_outside_image``, ``box_too_small``."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = np.where(finite[:, None], boxes, 0).astype(np.float32)
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, height)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    reasons = ["box_not_finite" if not ok else "box_outside_image" if wi <= 0 or hi <= 0
               else "box_too_small" if wi < limits.min_width or hi < limits.min_height else ""
               for ok, wi, hi in zip(finite, w, h)]
    return clipped, reasons


class BlazePoseBoxes:
    """The people BlazePose finds in each frame (``detectors.blazepose``, static mode): their landmark boxes;
    with ``second_look``, also the rider where BlazePose misses them (``detectors.second_look``).

    ``score_threshold`` is BlazePose's person-detection confidence; the reported
    score is the landmarks' mean visibility.
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


def people_of(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, person_class: int,
              score_threshold: float) -> PersonBoxes:
    """A detector's boxes (N, 4), scores (N,) and classes (N,) -> its people scoring above the threshold."""
    keep = (classes == person_class) & (scores > score_threshold)
    return PersonBoxes(np.asarray(boxes[keep], np.float32).reshape(-1, 4), np.asarray(scores[keep], np.float32))


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
        return [people_of(r["boxes"].cpu().numpy(), r["scores"].cpu().numpy(), r["labels"].cpu().numpy(),
                          self.PERSON_LABEL, self.score_threshold) for r in results]

    def close(self) -> None:
        pass


VITDET_CONFIG = "cascade_mask_rcnn_vitdet_h_75ep.py"
VITDET_WEIGHTS_URL = ("https://dl.fbaipublicfiles.com/detectron2/ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/"
                      "model_final_f05665.pkl")
# Where the config lives: 4D-Humans' copy (package hmr2), else detectron2's source tree (projects/ViTDet).
VITDET_CONFIG_HOMES = (("hmr2", "configs"), ("detectron2", "../projects/ViTDet/configs/COCO"))


def vitdet_config() -> Path | None:
    """The LazyConfig file 4D-Humans builds ViTDet from, where an installed package holds it."""
    for package, folder in VITDET_CONFIG_HOMES:
        try:
            spec = importlib.util.find_spec(package)
        except ValueError:
            spec = None
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent / folder / VITDET_CONFIG
            if path.is_file():
                return path.resolve()
    return None


def vitdet_missing() -> str | None:
    """Why ``--boxes vitdet`` cannot run here (None: it can, given its weights)."""
    if importlib.util.find_spec("detectron2") is None:
        return ("detectron2 is not installed (it is not on PyPI: pip install "
                "'git+https://github.com/facebookresearch/detectron2.git', which needs a compiler and torch)")
    if vitdet_config() is None:
        return (f"detectron2 imports but {VITDET_CONFIG} was not found (install 4D-Humans' hmr2 package, "
                f"or detectron2 from a source checkout that has projects/ViTDet)")
    return None


def vitdet_weights(cache_dir: Path) -> Path:
    """Where ``download-models --boxes vitdet`` puts ViTDet's weights (about 2.7 GB): ``<cache>/vitdet/``."""
    return Path(cache_dir) / "vitdet" / VITDET_WEIGHTS_URL.rsplit("/", 1)[1]


def vitdet_cache(checkpoint: str | Path | None, cache_dir: str | Path | None = None) -> Path:
    """The 4D-Humans cache ViTDet's weights go in: the checkpoint's own, else the first candidate."""
    from detectors.hmr2 import weights  # its download helpers are only needed here

    found = weights.cache_dir_of(Path(checkpoint)) if checkpoint is not None else None
    return found or weights.candidate_cache_dirs(cache_dir)[0]


def fetch_vitdet_weights(cache_dir: Path) -> Path:
    """Download (resumably) ViTDet's weights into the cache; their path."""
    from detectors.download import download, progress_bar

    path = vitdet_weights(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return download(VITDET_WEIGHTS_URL, path, progress=progress_bar(path.name))


def vitdet_report(cache_dir: Path) -> str:
    """One line for ``launch.py models``: whether ``--boxes vitdet`` can run here, and what is missing."""
    missing = vitdet_missing()
    if missing:
        return f"vitdet: not available: {missing}; --boxes auto uses Faster R-CNN (GPU) or BlazePose"
    path = vitdet_weights(cache_dir)
    if not path.is_file():
        return (f"vitdet: detectron2 and {VITDET_CONFIG} found; weights missing at {path} "
                f"(python launch.py download-models --detector hmr2 --boxes vitdet)")
    return f"vitdet: available (config {vitdet_config()}, weights {path}); --boxes auto uses it"


class VitDetBoxes:
    """4D-Humans' person detector: detectron2's Cascade Mask R-CNN with a ViT-H backbone (COCO), built as
    demo.py and track.py build it: the config ``cascade_mask_rcnn_vitdet_h_75ep.py``, its test-time resize,
    ``box_score`` as every cascade stage's ``test_score_thresh`` (demo.py 0.25, track.py 0.5), then people
    (class 0) scoring above ``score_threshold`` (demo.py 0.5, PHALP 0.8). One image per forward, as upstream.
    """

    PERSON_CLASS = 0

    def __init__(self, weights: str | Path, score_threshold: float = 0.5, box_score: float = 0.25,
                 device: str | torch.device = "cpu"):
        missing = vitdet_missing()
        if missing:
            raise ImportError(missing)
        import detectron2.data.transforms as T  # optional dependency, not on PyPI
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.config import LazyConfig, instantiate

        if not Path(weights).is_file():
            raise FileNotFoundError(f"ViTDet weights not found at {weights}; "
                                    f"python launch.py download-models --detector hmr2 --boxes vitdet")
        config = LazyConfig.load(str(vitdet_config()))
        for predictor in config.model.roi_heads.box_predictors:
            predictor.test_score_thresh = box_score
        self.device = torch.device(device)
        self.model = instantiate(config.model).eval().to(self.device)
        DetectionCheckpointer(self.model).load(str(weights))
        # The config's own test-time input: its resize, and the channel order its images are read in.
        mapper = instantiate(config.dataloader.test.mapper)
        self.resize, self.input_rgb = mapper.augmentations, mapper.image_format == "RGB"
        self.score_threshold = score_threshold
        self._input = T.AugInput

    def __call__(self, frames: Sequence[FrameImage]) -> list[PersonBoxes]:
        people = []
        for frame in frames:
            image = frame.image[:, :, ::-1] if self.input_rgb else frame.image
            resized = self.resize(self._input(image)).apply_image(image)
            tensor = torch.as_tensor(resized.astype(np.float32).transpose(2, 0, 1))
            with torch.inference_mode():
                result = self.model([{"image": tensor.to(self.device), "height": image.shape[0],
                                      "width": image.shape[1]}])[0]["instances"]
            people.append(people_of(result.pred_boxes.tensor.cpu().numpy(), result.scores.cpu().numpy(),
                                    result.pred_classes.cpu().numpy(), self.PERSON_CLASS, self.score_threshold))
        return people

    def close(self) -> None:
        pass


BOX_SOURCES = ("auto", "vitdet", "fasterrcnn", "blazepose")


def make_box_source(name: str = "auto", device: str | torch.device = "cpu", limits: BoxThresholds = PRESETS["demo"],
                    second_look: bool = False, vitdet_weights_path: str | Path | None = None) -> BoxSource:
    """A box source by name. ``auto``: ViTDet where it can run (detectron2, its config and weights), else
    Faster R-CNN on a GPU where torchvision imports, else BlazePose (``second_look``: BlazePose's misses looked
    at again where the rider is expected). ``limits`` gives each source its score threshold."""
    device = torch.device(device)
    if name not in BOX_SOURCES:
        raise ValueError(f"unknown box source {name!r}; choose one of {', '.join(BOX_SOURCES)}")
    if name == "vitdet" or (name == "auto" and vitdet_missing() is None and vitdet_weights_path is not None
                            and Path(vitdet_weights_path).is_file()):
        if vitdet_weights_path is None:
            raise FileNotFoundError("--boxes vitdet needs ViTDet's weights: "
                                    "python launch.py download-models --detector hmr2 --boxes vitdet")
        return VitDetBoxes(vitdet_weights_path, limits.score, limits.vitdet_score, device)
    if name == "fasterrcnn" or (name == "auto" and device.type == "cuda"):
        try:
            return FasterRcnnBoxes(limits.score, device)
        except ImportError:
            if name == "fasterrcnn":
                raise
    return BlazePoseBoxes(limits.score, second_look)
