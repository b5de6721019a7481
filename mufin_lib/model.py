"""The MUFIN network in one file (spec §2-3, §7): bottlenecks, A_S, vectoriser, A_C, classifiers.

A product is a bag of m descriptors (its title and its images). Each descriptor's pre-embedding (from the
frozen or fine-tuned encoder, mufin_lib.encoders) goes through a linear bottleneck to the working width D;
the bag X^0 (m x D, padded, masked) goes through one self-attention layer A_S, shared by points and
labels (Siamese), giving X^1; the masked mean, L2-normalised, is x^1 (points) or z_l^1 (labels).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelParams:
    D: int = 192  # working width (authors' code: 192)
    text_dim: int = 384  # pre-embedding widths (MiniLM: 384; EfficientNet-Lite0: 1280)
    image_dim: int = 1280
    heads: int = 1
    attn_dropout: float = 0.1
    spectral_norm: bool = True  # authors' code: spectral-normalised bottleneck, no activation
    self_attention: bool = True  # False: the "no A_S" ablation (a feed-forward layer instead)


def masked_mean(X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid rows of each bag. X: (B, m, D); mask: (B, m) True where valid."""
    w = mask.to(X.dtype).unsqueeze(-1)
    return (X * w).sum(1) / w.sum(1).clamp_min(1.0)


class Bottleneck(nn.Module):
    def __init__(self, d_in: int, D: int, spectral: bool = True):
        super().__init__()
        lin = nn.Linear(d_in, D, bias=False)
        self.proj = nn.utils.parametrizations.spectral_norm(lin) if spectral else lin

    def forward(self, x):
        return self.proj(x)


def identity_attention(D: int, heads: int, dropout: float, out_scale: float = 1.0) -> nn.MultiheadAttention:
    """Attention whose query, key and value projections start as the identity, and the output projection as
    out_scale times the identity (0: the residual branch starts silent)."""
    attn = nn.MultiheadAttention(D, heads, dropout=dropout, batch_first=True)
    with torch.no_grad():
        attn.in_proj_weight.copy_(torch.cat([torch.eye(D)] * 3))
        attn.in_proj_bias.zero_()
        attn.out_proj.weight.copy_(out_scale * torch.eye(D))
        attn.out_proj.bias.zero_()
    return attn


class SelfAttention(nn.Module):
    """A_S: one attention layer over the bag, post-LayerNorm, no feed-forward, identity-initialised
    projections (so that at the start X^1 ~ LayerNorm(X^0 + mean of the bag)), attention dropout."""

    def __init__(self, D: int, heads: int = 1, dropout: float = 0.1):
        super().__init__()
        self.attn = identity_attention(D, heads, dropout)
        self.norm = nn.LayerNorm(D)

    def forward(self, X, mask):
        out, _ = self.attn(X, X, X, key_padding_mask=~mask, need_weights=False)
        return self.norm(X + out)


class FeedForward(nn.Module):
    """The "no A_S" ablation: each descriptor on its own, residual + LayerNorm."""

    def __init__(self, D: int):
        super().__init__()
        self.ff = nn.Linear(D, D)
        self.norm = nn.LayerNorm(D)

    def forward(self, X, mask):
        return self.norm(X + self.ff(X))


class MufinEncoder(nn.Module):
    """Pre-embedded bag -> X^1 (per-descriptor) and x^1 (unit vector). Shared by points and labels."""

    def __init__(self, p: ModelParams):
        super().__init__()
        self.p = p
        self.text_bn = Bottleneck(p.text_dim, p.D, p.spectral_norm)
        self.image_bn = Bottleneck(p.image_dim, p.D, p.spectral_norm)
        self.A_S = SelfAttention(p.D, p.heads, p.attn_dropout) if p.self_attention else FeedForward(p.D)

    def bag(self, text, has_text, images, img_mask):
        """X^0: (B, 1 + k, D) = [title; images], mask (B, 1 + k)."""
        t = self.text_bn(text).unsqueeze(1)
        i = self.image_bn(images) if images.shape[1] else images.new_zeros(images.shape[0], 0, self.p.D)
        return torch.cat([t, i], 1), torch.cat([has_text.unsqueeze(1), img_mask], 1)

    def forward(self, text, has_text, images, img_mask):
        X0, mask = self.bag(text, has_text, images, img_mask)
        X1 = self.A_S(X0, mask)
        x1 = F.normalize(masked_mean(X1, mask), dim=-1)
        return x1, X1, mask
