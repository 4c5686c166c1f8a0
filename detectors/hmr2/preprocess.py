"""Person crops for HMR 2.0, equal to 4D-Humans' ``ViTDetDataset`` (inference).

For each person box:

1. grow the box to the 192:256 (w:h) aspect the backbone sees (never shrink);
   the crop is the square of the grown box's longer side, around the box centre;
2. if that square is more than 2.2× the 256-px crop, blur the image first
   (anti-aliasing, sigma = (factor − 1) / 2 with factor = side / 256 / 2);
3. warp the square to 256×256 (bilinear, black outside the image);
4. BGR → RGB, then ImageNet normalisation ``(x − 255·mean) / (255·std)``.

The arithmetic follows upstream's dtypes (float32 box maths, float64 blur and
normalisation) so the crops match it to float32 rounding. Upstream blurs the
whole frame once per person; here once per distinct sigma.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 256
BOX_ASPECT_WH = (192, 256)
IMAGE_MEAN_RGB = np.array([0.485, 0.456, 0.406])
IMAGE_STD_RGB = np.array([0.229, 0.224, 0.225])
GAUSSIAN_TRUNCATE = 4.0  # skimage.filters.gaussian / scipy.ndimage default


@dataclass
class Crops:
    images: np.ndarray  # (N, 3, 256, 256) float32, normalised RGB
    box_center: np.ndarray  # (N, 2) float32, pixels: centre of the input box
    box_size: np.ndarray  # (N,) float32, pixels: side of the square cropped around it


def square_boxes(boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """boxes (N, 4) x1 y1 x2 y2 -> centre (N, 2), side (N,) of the square crops, float32 throughout."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    center = (boxes[:, 2:4] + boxes[:, 0:2]) / 2.0
    # Upstream stores the size in units of 200 px and multiplies back; the float32
    # round trip can move it by one ulp, which would move the crop.
    wh = ((boxes[:, 2:4] - boxes[:, 0:2]) / 200.0) * 200.0
    return center, expand_to_aspect(wh).max(axis=1)


def expand_to_aspect(wh: np.ndarray, aspect_wh: tuple[int, int] = BOX_ASPECT_WH) -> np.ndarray:
    """(N, 2) widths and heights -> (N, 2), the smaller side grown to the target aspect."""
    w, h = wh[:, 0], wh[:, 1]
    too_wide = h / w < aspect_wh[1] / aspect_wh[0]
    grown_h = np.maximum(w * aspect_wh[1] / aspect_wh[0], h)
    grown_w = np.maximum(h * aspect_wh[0] / aspect_wh[1], w)
    return np.stack([np.where(too_wide, w, grown_w), np.where(too_wide, grown_h, h)], axis=1)


def antialias_sigma(box_size: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
    """(N,) square sides -> (N,) gaussian sigma in source pixels; 0 where no blur is needed."""
    factor = box_size / crop_size / 2.0
    return np.where(factor > 1.1, (factor - 1) / 2, 0.0)


def gaussian_kernel(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """(2r + 1,) normalised 1D gaussian, r = int(truncate·sigma + 0.5), as scipy.ndimage builds it."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * x**2)
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, C) -> (H, W, C) float64, per channel; skimage ``gaussian(preserve_range=True)``
    semantics: float64 values in the input's range, edges extended ('nearest')."""
    kernel = gaussian_kernel(sigma)
    return cv2.sepFilter2D(image.astype(np.float64), cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REPLICATE)


def crop_affine(center: np.ndarray, size: float, crop_size: int = CROP_SIZE) -> np.ndarray:
    """Affine (2, 3) taking the square of side ``size`` around ``center`` (2,) onto the crop.

    Built, as upstream does, from three float32 point pairs (centre, centre + half-side
    down, centre + half-side right) so that warpAffine sees the identical matrix.
    """
    c = center.astype(np.float64)
    src = np.float32([c, c + [0.0, size * 0.5], c + [size * 0.5, 0.0]])
    half = crop_size * 0.5
    dst = np.float32([[half, half], [half, crop_size], [crop_size, half]])
    return cv2.getAffineTransform(src, dst)


def normalise(crop_bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR crop (uint8 or float) -> (3, H, W) float32 normalised RGB.

    The crop is first cast to float32 (as upstream), then normalised in float64 and cast back.
    """
    rgb = crop_bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    return ((rgb - 255.0 * IMAGE_MEAN_RGB[:, None, None]) / (255.0 * IMAGE_STD_RGB[:, None, None])).astype(np.float32)


def crop_people(image_bgr: np.ndarray, boxes_xyxy: np.ndarray, crop_size: int = CROP_SIZE) -> Crops:
    """image (H, W, 3) uint8 BGR, boxes (N, 4) x1 y1 x2 y2 pixels -> the N network inputs."""
    center, size = square_boxes(boxes_xyxy)
    sigmas = antialias_sigma(size, crop_size)
    blurred = {float(s): gaussian_blur(image_bgr, float(s)) for s in np.unique(sigmas) if s > 0}
    images = np.empty((len(size), 3, crop_size, crop_size), dtype=np.float32)
    for i, (c, s, sigma) in enumerate(zip(center, size, sigmas)):
        source = blurred.get(float(sigma), image_bgr)
        crop = cv2.warpAffine(source, crop_affine(c, float(s), crop_size), (crop_size, crop_size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        images[i] = normalise(crop)
    return Crops(images=images, box_center=center, box_size=size)
