"""HMR 2.0 (4D-Humans): image crop -> SMPL body, camera and keypoints.

    crop (B, 3, 256, 256) --columns 32..223--> ViT --tokens--> SMPL head --> SMPL --> keypoints

``HMR2.forward`` returns the same dictionary as the official ``forward_step``
(inference mode), plus ``appearance``, the mean backbone token, for re-identification.
All camera quantities are in the 256-pixel crop's camera; ``pose.camera.cam_crop_to_full``
moves the translation to the full image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from detectors.hmr2.head import SMPLHead
from detectors.hmr2.smpl import SMPL
from detectors.hmr2.vit import ViT

# The backbone sees the middle 192 columns of the square crop: a 192:256 person box.
BACKBONE_COLUMNS = slice(32, -32)


@dataclass(frozen=True)
class Hmr2Config:
    """The numbers that size the network; the defaults are the released HMR 2.0b (ViT-H)."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    decoder_dim: int = 1024
    decoder_depth: int = 6
    decoder_heads: int = 8
    decoder_dim_head: int = 64
    decoder_mlp_dim: int = 1024
    focal_length: float = 5000.0  # pixels, for a crop of image_size pixels
    image_size: int = 256


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation (..., 6) -> rotation matrix (..., 3, 3).

    HMR 2.0's convention: a1 = x[0:3], a2 = x[3:6] are the first two *columns*
    before Gram–Schmidt (SPIN's (-1, 3, 2) reshape reads them interleaved instead).
    """
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def crop_camera_translation(cam: torch.Tensor, focal_length: float, image_size: int) -> torch.Tensor:
    """Weak-perspective crop camera [s, tx, ty] (B, 3) -> translation [tx, ty, tz] (B, 3).

    A body of unit size spanning s·image_size/2 pixels under focal f sits at tz = 2f / (image_size·s).
    """
    tz = 2 * focal_length / (image_size * cam[:, 0] + 1e-9)
    return torch.stack([cam[:, 1], cam[:, 2], tz], dim=-1)


def perspective_projection(points: torch.Tensor, translation: torch.Tensor, focal_length: torch.Tensor) -> torch.Tensor:
    """points (B, N, 3), translation (B, 3), focal_length (B, 2) -> (B, N, 2), principal point at 0."""
    camera_points = points + translation[:, None]
    return camera_points[..., :2] / camera_points[..., 2:] * focal_length[:, None]


class HMR2(nn.Module):
    def __init__(self, config: Hmr2Config = Hmr2Config()):
        super().__init__()
        self.config = config
        self.backbone = ViT(embed_dim=config.embed_dim, depth=config.depth, num_heads=config.num_heads)
        self.smpl_head = SMPLHead(context_dim=config.embed_dim, dim=config.decoder_dim, depth=config.decoder_depth,
                                  heads=config.decoder_heads, dim_head=config.decoder_dim_head,
                                  mlp_dim=config.decoder_mlp_dim)
        self.smpl = SMPL()
        # The Lightning module's ActNorm flag; kept so checkpoint keys match one to one.
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, img: torch.Tensor) -> dict:
        """img (B, 3, 256, 256) normalised RGB crops -> the official output dictionary:

        pred_cam (B, 3)                  weak-perspective crop camera [s, tx, ty]
        pred_smpl_params                 global_orient (B, 1, 3, 3), body_pose (B, 23, 3, 3), betas (B, 10)
        pred_cam_t (B, 3)                crop camera translation
        focal_length (B, 2)              crop focal length (5000 for 256 px)
        pred_keypoints_3d (B, 44, 3)     metres, SMPL frame, no translation
        pred_keypoints_2d (B, 44, 2)     crop coordinates in [-0.5, 0.5]; pixel = (v + 0.5)·256
        pred_vertices (B, 6890, 3)       metres, SMPL frame, no translation
        appearance (B, C)                mean of the backbone tokens
        """
        batch = img.shape[0]
        tokens, _ = self.backbone.forward_features(img[:, :, :, BACKBONE_COLUMNS])
        head = self.smpl_head(tokens)
        rotmats = rot6d_to_rotmat(head["pose_6d"].reshape(batch, -1, 6)).float()
        smpl_params = {"global_orient": rotmats[:, :1], "body_pose": rotmats[:, 1:], "betas": head["betas"].float()}
        cam = head["cam"].float()
        # SMPL skinning stays in float32 even under autocast: bf16 would move vertices by millimetres.
        with torch.autocast(img.device.type, enabled=False):
            vertices, keypoints_3d = self.smpl(**smpl_params)
            cam_t = crop_camera_translation(cam, self.config.focal_length, self.config.image_size)
            focal_length = torch.full((batch, 2), self.config.focal_length, device=img.device)
            keypoints_2d = perspective_projection(keypoints_3d, cam_t, focal_length / self.config.image_size)
        return {
            "pred_cam": cam,
            "pred_smpl_params": smpl_params,
            "pred_cam_t": cam_t,
            "focal_length": focal_length,
            "pred_keypoints_3d": keypoints_3d,
            "pred_keypoints_2d": keypoints_2d,
            "pred_vertices": vertices,
            "appearance": tokens.mean(dim=1).float(),
        }
