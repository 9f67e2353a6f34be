"""A tree-structured KV cache binding a :class:`WorldModel` to tree search.

The search expands one leaf per batch row per simulation. Every tree node (except the
root) stands for two tokens, the action token leading to it and its predicted latent
token; the node stores only these two tokens' keys and values. Expanding a child of node
``p`` runs the model on the root's context cache followed by the tokens of the path
root -> p, so the KV cache is shared by all nodes and nothing is recomputed: one
simulation costs one two-token transformer pass over the path, regardless of how deep the
tree is. Rows have paths of different depths; shorter ones are padded with masked keys.

Continuous suites (Sampled MuZero): the search works on ``K`` action *slots* per node. Each
node keeps the ``K`` actions sampled from its own policy when it was created (the root's come
from the caller); expanding slot ``k`` of node ``p`` feeds the model ``p``'s ``k``-th action.
Because the candidates are drawn from the policy itself, the search prior over them is
uniform (Sampled MuZero's ``beta = pi`` case), so the prior logits returned are zeros.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scalezero.model.transformer import KVCache
from scalezero.model.world_model import RootInference, WorldModel


class ActionSampler:
    """Draws each node's candidate actions from the model's continuous policy.

    ``num_samples`` candidates per node; with ``include_mode`` the first is the policy's
    squashed mean. ``generator`` makes the draws reproducible.
    """

    def __init__(self, model: WorldModel, num_samples: int, include_mode: bool, generator: torch.Generator | None = None) -> None:
        self.model = model
        self.num_samples = num_samples
        self.include_mode = include_mode
        self.generator = generator

    def __call__(self, params: Tensor, task_ids: Tensor, std_scale: float = 1.0) -> Tensor:
        """Policy parameters ``[B, 2 * action_dim]`` -> candidates ``[B, K, action_dim]``."""
        dist = self.model.policy_distribution(params, task_ids)
        draws = dist.sample(self.num_samples, generator=self.generator, std_scale=std_scale)
        if self.include_mode:
            draws[:, 0] = dist.mode()
        return draws


class TreeSearchModel:
    """The search's ``recurrent`` callable over a per-node KV cache.

    Args:
        model: the world model (used in inference mode; put it in eval mode).
        root: output of :meth:`WorldModel.initial_inference` for the ``B`` roots.
        task_ids: ``[B]`` long task of each row.
        num_nodes: capacity of the tree, ``num_simulations + 1`` (node 0 is the root;
            the node created at simulation ``s`` is node ``s + 1``).
        root_actions: continuous suites only: ``[B, K, action_dim]`` the root's candidates.
        sampler: continuous suites only: draws the candidates of every new node.

    Attributes:
        node_kv: ``[B, N, layers, 2 (k/v), H, 2 tokens, dh]`` keys/values of each node's
            action token and latent token.
        latents: ``[B, N, D]`` latent of each node (the root's encoded latent for node 0).
        parent: ``[B, N]`` int64 numpy parent pointers (the root points at itself).
        depth: ``[B, N]`` int64 numpy depths (root 0).
        node_actions: continuous suites: ``[B, N, K, action_dim]`` each node's candidates.
    """

    def __init__(
        self,
        model: WorldModel,
        root: RootInference,
        task_ids: Tensor,
        num_nodes: int,
        root_actions: Tensor | None = None,
        sampler: ActionSampler | None = None,
    ) -> None:
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
        if model.continuous and (root_actions is None or sampler is None):
            raise ValueError("a continuous suite's search needs root_actions and a sampler")
        self.model = model
        self.window_steps = int(model.cfg.attention_window_steps)
        with torch.inference_mode():
            self.root_cache = root.cache.detach()
            layers, _, b, heads, _, head_dim = self.root_cache.kv.shape
            self.batch_size = b
            self.num_nodes = num_nodes
            self.device = self.root_cache.kv.device
            self.task_ids = task_ids.to(self.device).long()
            self.node_kv = self.root_cache.kv.new_zeros(b, num_nodes, layers, 2, heads, 2, head_dim)
            self.latents = root.latent.detach().new_zeros(b, num_nodes, root.latent.shape[-1])
            self.latents[:, 0] = root.latent
            self.sampler = sampler
            self.node_actions: Tensor | None = None
            if model.continuous:
                k, dims = root_actions.shape[1:]
                self.node_actions = root_actions.new_zeros(b, num_nodes, k, dims)
                self.node_actions[:, 0] = root_actions
            # First position after the root latent token, per row.
            self.root_next = self.root_cache.next_position().cpu().numpy().astype(np.int64)
        self.parent = np.zeros((b, num_nodes), dtype=np.int64)
        self.depth = np.zeros((b, num_nodes), dtype=np.int64)
        self._rows_np = np.arange(b)
        self._rows = torch.arange(b, device=self.device)

    def _path(self, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right-aligned paths root -> parent (root excluded), cut to the attention window.

        Only the last ``attention_window_steps`` nodes of a path can be seen by the two new
        tokens (older keys fall outside the sliding window), so deeper ancestors are not
        gathered at all: the cost of a simulation does not grow with the tree's depth.

        Returns ``path [B, Dmax]`` node ids, ``slot_valid [B, Dmax]`` and ``slot_depth
        [B, Dmax]`` (depth of the node in each slot; meaningless where invalid).
        """
        rows = self._rows_np
        parent_depth = self.depth[rows, parents]
        keep = np.minimum(parent_depth, self.window_steps)
        dmax = int(keep.max()) if keep.size else 0
        path = np.zeros((self.batch_size, dmax), dtype=np.int64)
        cur = parents.copy()
        for j in range(dmax - 1, -1, -1):
            path[:, j] = cur
            cur = self.parent[rows, cur]
        slots = np.arange(dmax)[None, :]
        slot_valid = slots >= (dmax - keep)[:, None]
        slot_depth = parent_depth[:, None] - (dmax - 1 - slots)
        return path, slot_valid, slot_depth

    def __call__(
        self, parent_nodes: np.ndarray, actions: np.ndarray, new_node: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expand child ``new_node`` of ``parent_nodes[b]`` via ``actions[b]`` in every row.

        Args:
            parent_nodes: ``[B]`` int node ids (already expanded).
            actions: ``[B]`` int actions.
            new_node: id of the node to create (same for all rows).

        Returns:
            ``reward [B]``, ``value [B]`` and ``prior_logits [B, A]`` as float32 numpy
            (illegal actions at -1e9; ``[B, K]`` zeros in a continuous suite).
        """
        if not 1 <= new_node < self.num_nodes:
            raise ValueError(f"new_node {new_node} outside 1..{self.num_nodes - 1}")
        parents = np.asarray(parent_nodes, dtype=np.int64).reshape(self.batch_size)
        path, slot_valid, slot_depth = self._path(parents)
        dmax = path.shape[1]

        # Positions of the path tokens and of the new action token.
        b = self.batch_size
        base = self.root_next[:, None] + 2 * (slot_depth - 1)
        path_pos = np.stack([base, base + 1], axis=-1).reshape(b, 2 * dmax)
        path_valid = np.repeat(slot_valid, 2, axis=1)
        new_pos = self.root_next + 2 * self.depth[self._rows_np, parents]
        acts = np.asarray(actions, dtype=np.int64).reshape(b)
        # One host->device copy: [path | path positions | path validity | position | action | parent].
        packed = np.concatenate([path, path_pos, path_valid, new_pos[:, None], acts[:, None], parents[:, None]], axis=1)

        with torch.inference_mode():
            packed_t = torch.from_numpy(packed).to(self.device)
            path_t, pos_t, valid_t, new_pos_t, acts_t, parents_t = torch.split(packed_t, [dmax, 2 * dmax, 2 * dmax, 1, 1, 1], dim=1)
            root = self.root_cache
            if dmax > 0:
                kv = self.node_kv[self._rows.unsqueeze(1), path_t]  # [B, Dmax, layers, 2, H, 2, dh]
                layers, _, heads, _, head_dim = kv.shape[2:]
                kv = kv.permute(2, 3, 0, 4, 1, 5, 6).reshape(layers, 2, b, heads, 2 * dmax, head_dim)
                cache = KVCache(
                    kv=torch.cat([root.kv, kv], dim=-2),
                    positions=torch.cat([root.positions, pos_t], dim=-1),
                    valid=torch.cat([root.valid, valid_t.bool()], dim=-1),
                )
            else:
                cache = root
            if self.node_actions is not None:  # slot k of the parent -> its k-th candidate action
                step_actions = self.node_actions[self._rows, parents_t[:, 0], acts_t[:, 0]]
            else:
                step_actions = acts_t[:, 0]
            out = self.model.recurrent_inference(cache, step_actions, self.task_ids, position=new_pos_t[:, 0])
            self.node_kv[:, new_node] = out.new_token_kv.permute(2, 0, 1, 3, 4, 5)
            self.latents[:, new_node] = out.next_latent
            logits = out.policy_logits
            if self.node_actions is not None:
                self.node_actions[:, new_node] = self.sampler(out.policy_logits, self.task_ids)
                logits = out.policy_logits.new_zeros(b, self.node_actions.shape[2])  # uniform over the draws
            # One device->host copy: [reward | value | policy logits].
            result = torch.cat([out.reward[:, None], out.value[:, None], logits], dim=1)
            result = result.float().cpu().numpy()
        reward, value, logits = result[:, 0].copy(), result[:, 1].copy(), result[:, 2:].copy()
        self.parent[:, new_node] = parents
        self.depth[:, new_node] = self.depth[self._rows_np, parents] + 1
        return reward, value, logits
