"""Observation encoders: map padded observations of one kind to SimNorm latents.

Every task of the same observation kind shares one encoder (observations are zero-padded
to the kind's shape by :class:`~scalezero.tasks.base.SuiteLayout`), and every encoder maps
into the same ``embed_dim`` latent space, so the transformer and heads are shared by all
tasks of the suite.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalezero.config import ModelConfig
from scalezero.tasks.base import SuiteLayout


class SimNorm(nn.Module):
    """Simplicial normalisation (TD-MPC2 / UniZero latent normalisation).

    The last dimension is split into groups of ``group`` features and a softmax is taken
    within each group, so each group lies on a simplex. This bounds the latent and keeps
    the latent-consistency loss well scaled without collapsing to zero.
    Shape: ``[..., D] -> [..., D]`` with ``D % group == 0``.
    """

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = int(group)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        return torch.softmax(x.reshape(*shape[:-1], -1, self.group), dim=-1).reshape(shape)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class ImageEncoder(nn.Module):
    """Small conv net for ``(C, H, W)`` grids (e.g. MinAtar 10x10 with padded channels).

    conv3x3 C->ch, GELU, conv3x3 stride 2 ch->2ch, GELU, flatten, Linear -> embed_dim,
    SimNorm. Input ``[N, C, H, W]`` of any numeric/bool dtype (converted to float, not
    rescaled: MinAtar channels are already 0/1); output ``[N, embed_dim]``.
    """

    def __init__(self, obs_shape: tuple[int, ...], channels: int, embed_dim: int, simnorm_group: int) -> None:
        super().__init__()
        c, h, w = obs_shape
        self.obs_shape = tuple(obs_shape)
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Flatten(),
        )
        flat = 2 * channels * ((h + 1) // 2) * ((w + 1) // 2)
        self.proj = nn.Linear(flat, embed_dim)
        self.norm = SimNorm(simnorm_group)

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(self.proj.weight.dtype)
        return self.norm(self.proj(self.conv(x)))


class VectorEncoder(nn.Module):
    """MLP for flat vector observations: Linear, LayerNorm, GELU, Linear, SimNorm.

    Input ``[N, obs_dim]`` (any numeric dtype); output ``[N, embed_dim]``.
    """

    def __init__(self, obs_dim: int, hidden: int, embed_dim: int, simnorm_group: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, embed_dim),
        )
        self.norm = SimNorm(simnorm_group)

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(self.net[0].weight.dtype)
        return self.norm(self.net(x))


def make_encoders(cfg: ModelConfig, layout: SuiteLayout) -> nn.ModuleDict:
    """One encoder per observation kind present in ``layout.obs_shapes`` (keyed by kind)."""
    encoders: dict[str, nn.Module] = {}
    for kind, shape in layout.obs_shapes.items():
        if kind == "image":
            encoders[kind] = ImageEncoder(shape, cfg.conv_channels, cfg.embed_dim, cfg.simnorm_group)
        elif kind == "vector":
            (dim,) = shape
            encoders[kind] = VectorEncoder(dim, cfg.mlp_hidden, cfg.embed_dim, cfg.simnorm_group)
        else:
            raise ValueError(f"no encoder for observation kind {kind!r}")
    return nn.ModuleDict(encoders)
