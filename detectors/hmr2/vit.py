"""HMR 2.0's ViT backbone (ViTPose style), configured by a few numbers.

The released model is ViT-H: ``ViT(embed_dim=1280, depth=32, num_heads=16)``.
Parameter names equal the official state-dict keys under ``backbone.``.

Two quirks of the official backbone are kept because the weights depend on them:
the patch convolution has ``padding=2`` (a 256×192 crop gives a 16×12 grid, the
extra border pixels being cut by the stride), and ``pos_embed`` has a slot for a
class token that does not exist; that slot is added to every patch position.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, padding: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, padding=padding)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """img (B, 3, H, W) -> tokens (B, Hp·Wp, C), grid (Hp, Wp)."""
        grid = self.proj(img)
        return grid.flatten(2).transpose(1, 2), (grid.shape[2], grid.shape[3])


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C); softmax(q·kᵀ / √head_dim)·v per head."""
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (drop-path is an identity at inference, so it is absent)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(
        self,
        img_size: tuple[int, int] = (256, 192),
        patch_size: int = 16,
        padding: int = 2,
        in_chans: int = 3,
        embed_dim: int = 1280,
        depth: int = 32,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, padding)
        num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        # One slot more than there are patches: the unused class-token slot.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.last_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def forward_features(self, img: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """img (B, 3, 256, 192) normalised RGB -> tokens (B, 192, C) after last_norm, grid (16, 12)."""
        x, grid = self.patch_embed(img)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x)
        return self.last_norm(x), grid

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img (B, 3, 256, 192) -> feature map (B, C, 16, 12), as the official backbone returns."""
        tokens, grid = self.forward_features(img)
        return tokens_to_feature_map(tokens, grid)


def tokens_to_feature_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """tokens (B, Hp·Wp, C) in row-major grid order -> (B, C, Hp, Wp)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)
