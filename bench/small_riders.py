"""Small-rider clips made from the labelled snow clips: each shrunk into a larger frame of snow-like
background, and optionally tiled beside another clip (a bystander), with the rider's labels moved the same way.

Made at test or bench time into a scratch folder from ``../shared/media/snow`` (never committed):

    python -m bench.small_riders OUT_DIR   writes OUT_DIR/<name>.avi and OUT_DIR/labels.txt

A wide drone shot's rider is 30-70 px tall; the shared clips' riders are 80-280 px, so a
third of that size puts them in that range.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.recall import SNOW, Box, ClipLabels, read_labels


@dataclass(frozen=True)
class Placement:
    """A source clip drawn into the canvas: scaled by ``scale``, its top-left corner at ``x``, ``y`` px."""

    clip: str
    scale: float
    x: int
    y: int


@dataclass(frozen=True)
class SmallClip:
    """A made clip: the first placement holds the labelled rider, the others are bystanders."""

    name: str
    size: tuple[int, int]  # canvas width, height px
    placements: tuple[Placement, ...]


# Each clip at a third in a 640 x 360 frame (riders 27-93 px tall), off-centre so that the frame's
# centre holds no one; and two tiled with a bystander riding in the next tile.
SMALL_CLIPS = (
    *(SmallClip(f"{clip}.third", (640, 360), (Placement(clip, 1 / 3, 300, 40 + 40 * n),))
      for n, clip in enumerate(("airbag-jump", "park-jump", "treeline-jump", "kicker-followcam"))),
    SmallClip("airbag-jump.tiled", (960, 540), (Placement("airbag-jump", 1 / 3, 520, 300),
                                                 Placement("park-jump", 1 / 4, 120, 80))),
    SmallClip("treeline-jump.tiled", (960, 540), (Placement("treeline-jump", 1 / 3, 80, 320),
                                                   Placement("airbag-jump", 1 / 4, 480, 40))),
)


def snow_background(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 BGR: bright, slightly blue-grey snow with soft low-frequency shading and grain."""
    width, height = size
    rng = np.random.default_rng(seed)
    shading = cv2.resize(rng.normal(0, 12, (height // 60 + 2, width // 60 + 2)), (width, height),
                         interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 3, (height, width))
    light = np.clip(222 + shading + grain, 0, 255)
    return np.dstack([light + 8, light + 3, light]).clip(0, 255).astype(np.uint8)


def moved(box: Box, placement: Placement) -> Box:
    """A box in a source clip's pixels, in the canvas's."""
    s = placement.scale
    return Box(box.x0 * s + placement.x, box.y0 * s + placement.y, box.x1 * s + placement.x, box.y1 * s + placement.y)


def make_clip(spec: SmallClip, out: Path, labels: dict[str, ClipLabels], snow: Path = SNOW) -> ClipLabels:
    """Write ``spec`` as an MJPEG AVI at ``out`` (as long as its rider's clip; bystander clips loop) and
    return the rider's labels in the canvas's pixels."""
    background = snow_background(spec.size)
    sources = [cv2.VideoCapture(str(snow / f"{p.clip}.mp4")) for p in spec.placements]
    fps = sources[0].get(cv2.CAP_PROP_FPS) or 30.0
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, spec.size)
    try:
        while True:
            canvas = background.copy()
            for n, (placement, source) in enumerate(zip(spec.placements, sources)):
                ok, image = source.read()
                if not ok and n > 0:  # a bystander's clip starts again
                    source.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, image = source.read()
                if not ok:
                    if n == 0:
                        return {index: None if box is None else moved(box, placement)
                                for index, box in labels[placement.clip].items()}
                    continue
                small = cv2.resize(image, None, fx=placement.scale, fy=placement.scale, interpolation=cv2.INTER_AREA)
                h, w = small.shape[:2]
                canvas[placement.y:placement.y + h, placement.x:placement.x + w] = small
            writer.write(canvas)
    finally:
        writer.release()
        for source in sources:
            source.release()


def write_labels(path: Path, labels: dict[str, ClipLabels]) -> None:
    lines = ["# clip frame x0 y0 x1 y1  (made by bench.small_riders from ../shared/media/snow/labels.txt)"]
    for clip, frames in labels.items():
        for index, box in sorted(frames.items()):
            lines.append(f"{clip} {index} none" if box is None else
                         f"{clip} {index} {box.x0:.0f} {box.y0:.0f} {box.x1:.0f} {box.y1:.0f}")
    path.write_text("\n".join(lines) + "\n")


def make_all(folder: Path, specs: tuple[SmallClip, ...] = SMALL_CLIPS) -> dict[str, ClipLabels]:
    """Every clip of ``specs`` into ``folder`` as <name>.avi, with labels.txt; returns the labels."""
    folder.mkdir(parents=True, exist_ok=True)
    source_labels = read_labels()
    labels = {spec.name: make_clip(spec, folder / f"{spec.name}.avi", source_labels) for spec in specs}
    write_labels(folder / "labels.txt", labels)
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.small_riders", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for the clips and their labels.txt")
    make_all(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
