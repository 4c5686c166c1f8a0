"""HMR 2.0's SMPL head: a transformer decoder reading one query token.

The query is a single zero scalar embedded to ``dim``; it attends to itself and
to the backbone tokens (``context``) for ``depth`` layers, then three linear
readouts add to the mean SMPL parameters (one IEF step):

    pose_6d = decpose(token) + init_body_pose      (B, 144) = 24 joints × 6D
    betas   = decshape(token) + init_betas         (B, 10)
    cam     = deccam(token) + init_cam             (B, 3)   weak perspective [s, tx, ty]

Module and parameter names equal the official state-dict keys under ``smpl_head.``;
the ``nn.Sequential`` wrappers exist only to keep those names (``to_out.0``, ``net.3``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_POSE_6D = 24 * 6
NUM_BETAS = 10
NUM_CAM = 3


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads·d) -> (B, heads, N, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads·d)."""
    return x.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, dim) -> (B, N, dim)."""
        q, k, v = (split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        return self.to_out(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.heads = heads
        self.to_kv = nn.Linear(context_dim, heads * dim_head * 2, bias=False)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (B, N, dim) queries, context (B, M, context_dim) -> (B, N, dim)."""
        k, v = (split_heads(t, self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        q = split_heads(self.to_q(x), self.heads)
        return self.to_out(merge_heads(F.scaled_dot_product_attention(q, k, v)))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        # Index 2 held the training-time dropout; the identity keeps the key net.3.
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    """LayerNorm on the query stream only; the context is never normalised here."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class CrossAttnTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, context_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([
                PreNorm(dim, SelfAttention(dim, heads, dim_head)),
                PreNorm(dim, CrossAttention(dim, heads, dim_head, context_dim)),
                PreNorm(dim, FeedForward(dim, mlp_dim)),
            ])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for self_attn, cross_attn, feed_forward in self.layers:
            x = x + self_attn(x)
            x = x + cross_attn(x, context=context)
            x = x + feed_forward(x)
        return x


class TokenDecoder(nn.Module):
    """Embeds the (B, 1, 1) query and runs the cross-attention transformer over the context."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, context_dim: int):
        super().__init__()
        self.to_token_embedding = nn.Linear(1, dim)
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1, dim))
        self.transformer = CrossAttnTransformer(dim, depth, heads, dim_head, mlp_dim, context_dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """query (B, 1, 1), context (B, M, context_dim) -> (B, 1, dim)."""
        return self.transformer(self.to_token_embedding(query) + self.pos_embedding, context=context)


class SMPLHead(nn.Module):
    def __init__(self, context_dim: int, dim: int = 1024, depth: int = 6, heads: int = 8, dim_head: int = 64,
                 mlp_dim: int = 1024):
        super().__init__()
        self.transformer = TokenDecoder(dim, depth, heads, dim_head, mlp_dim, context_dim)
        self.decpose = nn.Linear(dim, NUM_POSE_6D)
        self.decshape = nn.Linear(dim, NUM_BETAS)
        self.deccam = nn.Linear(dim, NUM_CAM)
        # The SMPL mean parameters; the checkpoint carries them.
        self.register_buffer("init_body_pose", torch.zeros(1, NUM_POSE_6D))
        self.register_buffer("init_betas", torch.zeros(1, NUM_BETAS))
        self.register_buffer("init_cam", torch.zeros(1, NUM_CAM))

    def decode_token(self, context: torch.Tensor) -> torch.Tensor:
        """context (B, M, context_dim) backbone tokens -> decoded query token (B, dim)."""
        query = context.new_zeros(context.shape[0], 1, 1)
        return self.transformer(query, context).squeeze(1)

    def forward(self, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """context (B, M, context_dim) -> pose_6d (B, 144), betas (B, 10), cam (B, 3)."""
        token = self.decode_token(context)
        return {
            "pose_6d": self.decpose(token) + self.init_body_pose,
            "betas": self.decshape(token) + self.init_betas,
            "cam": self.deccam(token) + self.init_cam,
        }
