"""World model of scalezero: encoders, a RoPE transformer over latent/action tokens, heads,
categorical supports for scalars, and a tree-structured KV cache for search."""

from scalezero.model.encoders import ImageEncoder, SimNorm, VectorEncoder, make_encoders
from scalezero.model.heads import Head, Heads, NextLatentHead
from scalezero.model.support import Support, inverse_value_transform, value_transform
from scalezero.model.transformer import KVCache, Transformer
from scalezero.model.tree_cache import ActionSampler, TreeSearchModel
from scalezero.model.world_model import (
    ILLEGAL_LOGIT,
    RecurrentOutput,
    RootInference,
    SequenceOutput,
    WorldModel,
)

__all__ = [
    "ILLEGAL_LOGIT",
    "ActionSampler",
    "Head",
    "Heads",
    "ImageEncoder",
    "KVCache",
    "NextLatentHead",
    "RecurrentOutput",
    "RootInference",
    "SequenceOutput",
    "SimNorm",
    "Support",
    "Transformer",
    "TreeSearchModel",
    "VectorEncoder",
    "WorldModel",
    "inverse_value_transform",
    "make_encoders",
    "value_transform",
]
