"""Observation encoders: map padded observations of one kind to normalised latents.

Every task of the same observation kind shares one encoder (observations are zero-padded
to the kind's shape by :class:`~scalezero.tasks.base.SuiteLayout`), and every encoder maps
into the same ``embed_dim`` latent space, so the transformer and heads are shared by all
tasks of the suite. Every encoder ends in the latent normalisation ``model.latent_norm``
(SimNorm or LayerNorm, :func:`latent_norm`); the latent is the transformer's observation
token as it is, so all of its variation reaches the transformer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scalezero.config import ModelConfig
from scalezero.tasks import words
from scalezero.tasks.base import SuiteLayout
from scalezero.tasks.words import PAD_ID


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
    """Conv net for ``(C, H, W)`` images: MinAtar 10x10 grids up to 64x64 or 96x96 Atari frames.

    conv3x3 C->ch, GELU, conv3x3 ch->2ch, GELU, then further conv3x3 2ch->2ch stages (each
    followed by GELU) until height and width are at most ``max_spatial``, flatten, Linear ->
    embed_dim, the latent norm. Every conv after the first has stride 2 while the grid is still
    larger than ``max_spatial`` (the second conv has stride 1 when the input already fits). With
    the default 8, a 10x10 grid is 5x5 after the second conv, a 64x64 frame goes 32, 16, 8 and a
    96x96 one 48, 24, 12, 6, which keeps the final Linear small (``2ch * 8 * 8`` inputs at
    most); with 10, MinAtar's grid stays 10x10 (``model.conv_max_spatial``).

    Input ``[N, C, H, W]`` of any numeric/bool dtype, converted to float and divided by
    ``obs_scale`` (the kind's largest observation value, 255 for raw pixels; 1 for MinAtar's 0/1
    channels, where no division happens at all); output ``[N, embed_dim]``.
    """

    def __init__(
        self, obs_shape: tuple[int, ...], channels: int, embed_dim: int, norm: nn.Module, obs_scale: float = 1.0,
        max_spatial: int = 8,
    ) -> None:  # fmt: skip
        super().__init__()
        if obs_scale <= 0:
            raise ValueError(f"ImageEncoder: obs_scale must be > 0, got {obs_scale}")
        c, h, w = obs_shape
        self.obs_shape = tuple(obs_shape)
        self.obs_scale = float(obs_scale)
        layers: list[nn.Module] = [
            nn.Conv2d(c, channels, kernel_size=3, padding=1),
            nn.GELU(),
        ]
        stride = 2 if max(h, w) > max_spatial else 1
        layers += [nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=stride, padding=1), nn.GELU()]
        if stride == 2:
            h, w = (h + 1) // 2, (w + 1) // 2
        while max(h, w) > max_spatial:
            layers += [nn.Conv2d(2 * channels, 2 * channels, kernel_size=3, stride=2, padding=1), nn.GELU()]
            h, w = (h + 1) // 2, (w + 1) // 2
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self.proj = nn.Linear(2 * channels * h * w, embed_dim)
        self.norm = norm

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(self.proj.weight.dtype)
        if self.obs_scale != 1.0:
            x = x / self.obs_scale
        return self.norm(self.proj(self.conv(x)))


class VectorEncoder(nn.Module):
    """MLP for flat vector observations: Linear, LayerNorm, GELU, Linear, the latent norm.

    Input ``[N, obs_dim]`` (any numeric dtype); output ``[N, embed_dim]``.
    """

    def __init__(self, obs_dim: int, hidden: int, embed_dim: int, norm: nn.Module) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Linear(hidden, embed_dim),
        )
        self.norm = norm

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(self.net[0].weight.dtype)
        return self.norm(self.net(x))


class TextEncoder(nn.Module):
    """Token ids ``[N, L]`` (``PAD_ID`` = 0 is padding, at the end) -> latent ``[N, embed_dim]``.

    Embedding (the hashed word ids of :mod:`scalezero.tasks.words`, one table for every text
    game), a kernel-3 convolution,
    then residual kernel-3 convolutions dilated 2 and 4 (GELU after each): every position sees
    15 tokens, enough to tell "you carry a red apple" from "you see a red apple". Masked mean
    and max pooling over the real tokens, LayerNorm, Linear -> ``embed_dim``, the latent norm.

    Padding is ignored exactly: activations are zeroed at padding positions after every layer,
    so appended padding looks like the convolutions' own zero border. Two shortcuts give the
    same result for less work: identical rows are encoded once (replay windows and search
    contexts repeat observations of a fixed game), and trailing columns that are padding in
    every row are dropped. An all-padding row (replay's empty positions) encodes as the empty
    text, without NaNs. Ids may come in any integer or float dtype.
    """

    def __init__(
        self, vocab_size: int, embed_dim: int, norm: nn.Module, token_dim: int = 32, channels: int = 64,
        dilations: tuple[int, ...] = (2, 4),
    ) -> None:  # fmt: skip
        super().__init__()
        self.vocab_size = int(vocab_size)
        self.embed = nn.Embedding(vocab_size, token_dim, padding_idx=PAD_ID)
        self.conv_in = nn.Conv1d(token_dim, channels, kernel_size=3, padding=1)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size=3, padding=d, dilation=d) for d in dilations)
        self.act = nn.GELU()
        self.norm_in = nn.LayerNorm(2 * channels)
        self.proj = nn.Linear(2 * channels, embed_dim)
        self.norm = norm

    def forward(self, obs: Tensor) -> Tensor:
        ids = obs.long()
        if ids.shape[0] > 1:
            unique, inverse = torch.unique(ids, dim=0, return_inverse=True)
            if unique.shape[0] < ids.shape[0]:
                return self._encode(unique)[inverse]
        return self._encode(ids)

    def _encode(self, ids: Tensor) -> Tensor:
        real = ids != PAD_ID
        used = real.any(0).nonzero()
        length = int(used.max()) + 1 if used.numel() else 1
        ids, real = ids[:, :length], real[:, :length]
        keep = real.unsqueeze(1).to(self.proj.weight.dtype)  # [N, 1, L]
        x = self.embed(ids).transpose(1, 2) * keep  # [N, token_dim, L], zeros at padding
        x = self.act(self.conv_in(x)) * keep
        for conv in self.convs:
            x = x + self.act(conv(x)) * keep
        count = keep.sum(-1)  # [N, 1]
        mean = x.sum(-1) / count.clamp(min=1.0)
        peak = x.masked_fill(keep == 0, float("-inf")).amax(-1)
        peak = torch.where(count > 0, peak, torch.zeros_like(peak))
        return self.norm(self.proj(self.norm_in(torch.cat([mean, peak], dim=-1))))


def latent_norm(cfg: ModelConfig) -> nn.Module:
    """The normalisation every latent ends in (encoders and the next-latent head alike):
    ``simnorm`` (groups of ``simnorm_group`` on simplices) or ``layernorm`` (zero mean, unit
    variance per latent, with a learned affine map)."""
    if cfg.latent_norm == "layernorm":
        return nn.LayerNorm(cfg.embed_dim)
    return SimNorm(cfg.simnorm_group)


def make_encoders(cfg: ModelConfig, layout: SuiteLayout) -> nn.ModuleDict:
    """One encoder per observation kind present in ``layout.obs_shapes`` (keyed by kind)."""
    encoders: dict[str, nn.Module] = {}
    for kind, shape in layout.obs_shapes.items():
        if kind == "image":
            scale = (layout.obs_scales or {}).get(kind, 1.0)
            encoders[kind] = ImageEncoder(
                shape, cfg.conv_channels, cfg.embed_dim, latent_norm(cfg), obs_scale=scale, max_spatial=cfg.conv_max_spatial
            )
        elif kind == "vector":
            (dim,) = shape
            encoders[kind] = VectorEncoder(dim, cfg.mlp_hidden, cfg.embed_dim, latent_norm(cfg))
        elif kind == "text":
            encoders[kind] = TextEncoder(words.VOCAB_SIZE, cfg.embed_dim, latent_norm(cfg))
        else:
            raise ValueError(f"no encoder for observation kind {kind!r}")
    return nn.ModuleDict(encoders)
