"""Causal pre-LN transformer with rotary positions, a sliding window and a KV cache.

Positions are passed explicitly per token, so left-padded batches, cached decoding and
tree-structured caches (where the keys of one row are gathered from several places) all
compute exactly the same attention as a plain forward over the unpadded sequence.

Attention rule: a query at position ``p`` sees the valid keys whose positions lie in
``(p - window_tokens, p]``. Because rotary embeddings make attention scores depend only
on relative positions, dropping keys older than the window is exact: a search that goes
deeper than the training sequences sees the same kind of context the model was trained on,
layer by layer. Across layers the window does not bound what a token depends on (each layer
reaches one window further back), so a token late in a sequence longer than the training
window still reads keys whose own contexts were longer than any in training
(``replay.bootstrap_split`` keeps bootstrap values out of that case).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scalezero.config import ModelConfig
from scalezero.model.moe import FeedForward, MoE, RouterInfo

ROPE_BASE = 10000.0


@dataclass
class KVCache:
    """Keys and values of already-processed tokens.

    Attributes:
        kv: ``[layers, 2, B, H, Lc, dh]``; index 0 of dim 1 holds keys (rotary already
            applied), index 1 values.
        positions: ``[B, Lc]`` long, the position of every cached token.
        valid: ``[B, Lc]`` bool, False for padding keys (never attended to).
    """

    kv: Tensor
    positions: Tensor
    valid: Tensor

    @property
    def length(self) -> int:
        """Number of cached tokens ``Lc`` (including padding)."""
        return int(self.kv.shape[-2])

    def next_position(self) -> Tensor:
        """``[B]`` long: one past the largest valid position of each row (0 if none)."""
        masked = torch.where(self.valid, self.positions, torch.full_like(self.positions, -1))
        return masked.max(dim=-1).values + 1

    def append(self, kv: Tensor, positions: Tensor, valid: Tensor) -> KVCache:
        """A new cache with tokens ``kv [layers, 2, B, H, L, dh]`` appended."""
        return KVCache(
            kv=torch.cat([self.kv, kv], dim=-2),
            positions=torch.cat([self.positions, positions], dim=-1),
            valid=torch.cat([self.valid, valid], dim=-1),
        )

    def detach(self) -> KVCache:
        return KVCache(self.kv.detach(), self.positions, self.valid)


def rotary_frequencies(head_dim: int) -> Tensor:
    """``[head_dim // 2]`` float32 rotary frequencies (computed once per transformer)."""
    half = head_dim // 2
    return ROPE_BASE ** (-torch.arange(half, dtype=torch.float32) / half)


def rotary_cos_sin(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Rotary tables for ``positions [B, L]`` -> cos, sin ``[B, 1, L, head_dim]``."""
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # [B, L, half]
    angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [B, 1, L, dh]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [..., B, H, L, dh]`` pairwise (first half with second half) by the angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin


class SelfAttention(nn.Module):
    """Multi-head self-attention over cached + new tokens, rotary on q/k."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout
        self.out_drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, past: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``x [B, L, D]``, ``mask [B, 1, L, Lc + L]`` bool, ``past [2, B, H, Lc, dh]`` or None.

        Returns the output ``[B, L, D]`` and the new tokens' k/v ``[2, B, H, L, dh]``.
        """
        b, l, d = x.shape
        qkv = self.qkv(x).view(b, l, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        qk = apply_rotary(qkv[:2], cos, sin)  # queries and keys in one pass: half the small ops
        q, k, v = qk[0], qk[1], qkv[2]
        new_kv = torch.stack([k, v])
        if past is not None:
            k = torch.cat([past[0], k], dim=-2)
            v = torch.cat([past[1], v], dim=-2)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(b, l, d)
        return self.out_drop(self.out(y)), new_kv


class Block(nn.Module):
    """Pre-LN block: ``x + attn(ln(x))`` then ``x + ffn(ln(x))``; the FFN is dense (4x GELU)
    or a Mixture-of-Experts layer when ``num_experts > 0``."""

    def __init__(self, dim: int, heads: int, dropout: float, num_experts: int = 0, top_k: int = 1, shared_expert: bool = True) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.ln_mlp = nn.LayerNorm(dim)
        self.mlp: nn.Module = (
            MoE(dim, num_experts, top_k=top_k, shared_expert=shared_expert, dropout=dropout)
            if num_experts > 0
            else FeedForward(dim, dropout=dropout)
        )

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor,
        past: Tensor | None,
        router_info: list[RouterInfo] | None = None,
        expert_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        a, new_kv = self.attn(self.ln_attn(x), cos, sin, mask, past)
        x = x + a
        if isinstance(self.mlp, MoE):
            allowed = None if expert_mask is None else expert_mask[:, None, :].expand(x.shape[0], x.shape[1], -1)
            y, info = self.mlp(self.ln_mlp(x), allowed)
            if router_info is not None:
                router_info.append(info)
        else:
            y = self.mlp(self.ln_mlp(x))
        return x + y, new_kv


def attention_mask(
    q_pos: Tensor, k_pos: Tensor, k_valid: Tensor, window_tokens: int, num_cached: int
) -> Tensor:
    """Boolean mask ``[B, 1, L, Lk]`` (True = may attend).

    ``q_pos [B, L]`` are the new tokens (which are also the last ``L`` keys);
    ``k_pos, k_valid [B, Lk]``. A key is visible when valid and ``q - window < k <= q``.
    Each query always sees itself so that no row is fully masked (padding queries would
    otherwise produce NaN); for valid queries this changes nothing.
    """
    qp = q_pos.unsqueeze(-1)  # [B, L, 1]
    kp = k_pos.unsqueeze(-2)  # [B, 1, Lk]
    allowed = k_valid.unsqueeze(-2) & (kp <= qp) & (kp > qp - window_tokens)
    l = q_pos.shape[-1]
    eye = torch.eye(l, dtype=torch.bool, device=q_pos.device)
    self_mask = F.pad(eye, (num_cached, 0))  # [L, Lk]
    return (allowed | self_mask).unsqueeze(1)


class Transformer(nn.Module):
    """Causal pre-LN transformer with RoPE, sliding window and KV cache (final LayerNorm).

    ``window_tokens = 2 * cfg.attention_window_steps`` since every step is two tokens.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dim = cfg.embed_dim
        self.heads = cfg.num_heads
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.num_layers = cfg.num_layers
        self.window_tokens = 2 * cfg.attention_window_steps
        self.blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.dropout, cfg.moe_num_experts, cfg.moe_top_k, cfg.moe_shared_expert)
            for _ in range(cfg.num_layers)
        )
        self.ln_out = nn.LayerNorm(cfg.embed_dim)
        self.register_buffer("inv_freq", rotary_frequencies(self.head_dim), persistent=False)

    def forward(
        self,
        x: Tensor,
        positions: Tensor,
        key_valid: Tensor,
        cache: KVCache | None = None,
        router_info: list[RouterInfo] | None = None,
        expert_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run new tokens on top of an optional cache.

        Args:
            x: ``[B, L, D]`` new token embeddings.
            positions: ``[B, L]`` long positions of the new tokens.
            key_valid: ``[B, L]`` bool, False for padding tokens (masked as keys).
            cache: earlier tokens (attended to together with the new ones), or None.
            router_info: if given, each MoE layer appends its :class:`RouterInfo` (the
                training path collects balance losses and expert loads this way).
            expert_mask: ``[B, E]`` bool, the routed experts each row's tokens may use
                (task clustering); None: all.

        Returns:
            ``y [B, L, D]`` and the new tokens' k/v ``[layers, 2, B, H, L, dh]``
            (``cache.append(new_kv, positions, key_valid)`` extends the cache).
        """
        if cache is None:
            k_pos, k_valid, num_cached = positions, key_valid, 0
        else:
            k_pos = torch.cat([cache.positions, positions], dim=-1)
            k_valid = torch.cat([cache.valid, key_valid], dim=-1)
            num_cached = cache.length
        mask = attention_mask(positions, k_pos, k_valid, self.window_tokens, num_cached)
        cos, sin = rotary_cos_sin(positions, self.inv_freq, x.dtype)
        new_kv = []
        for i, block in enumerate(self.blocks):
            past = None if cache is None else cache.kv[i]
            x, kv = block(x, cos, sin, mask, past, router_info, expert_mask)
            new_kv.append(kv)
        return self.ln_out(x), torch.stack(new_kv)
