"""The search drivers over a batch of independent roots: :func:`puct_search` and
:func:`gumbel_search` (``run_search`` picks one by ``config.algorithm``), one simulation loop.

Per simulation the driver makes exactly three calls: a numba selection kernel (one leaf
edge per row), the model's ``recurrent`` function (one new node per row), and a numba
expand-and-backup kernel. Everything else (allocation, root noise, Gumbel set-up, the
outputs) happens once per search, vectorised over rows, so the per-simulation Python cost
does not grow with the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scalezero.config import SearchConfig
from scalezero.search import gumbel as _gumbel
from scalezero.search import tree as _tree

RecurrentFn = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""``recurrent(parent_nodes [B] int32, actions [B] int32, new_node) -> (reward [B], value [B],
prior_logits [B, A])`` (float32). Called once per simulation; ``new_node`` is the id the
search gives the node it creates in every row (``s + 1`` at simulation ``s``)."""


@dataclass
class Root:
    """Model outputs at the roots of a batch of searches."""

    prior_logits: np.ndarray
    """``[B, A]`` float32 raw policy logits (values at illegal actions are ignored)."""
    value: np.ndarray
    """``[B]`` float32 model value of each root."""
    legal: np.ndarray
    """``[B, A]`` bool actions legal at the root (what can be played now)."""
    tree_legal: np.ndarray | None = None
    """``[B, A]`` bool actions legal at the nodes below the root (what the task can ever play,
    for tasks whose legal set changes from step to step); None: ``legal`` everywhere."""


@dataclass
class SearchOutput:
    """Result of a batch of searches."""

    action: np.ndarray
    """``[B]`` int64 action to play."""
    policy_target: np.ndarray
    """``[B, A]`` float32 training target (visit distribution for pUCT, improved policy for
    Gumbel); 0 at illegal actions, rows sum to 1."""
    root_value: np.ndarray
    """``[B]`` float32 visit-weighted mean of the root's action values (the mean return
    backed up through the root over all simulations)."""
    visit_counts: np.ndarray
    """``[B, A]`` int32 visits of each root action."""
    q_values: np.ndarray
    """``[B, A]`` float32 Q of each root action (0 where unvisited)."""


@dataclass
class _Tree:
    """The preallocated flat arrays of ``tree.py`` for ``B`` rows and ``N`` nodes."""

    children: np.ndarray
    parent: np.ndarray
    action: np.ndarray
    visits: np.ndarray
    value_sum: np.ndarray
    raw_value: np.ndarray
    reward: np.ndarray
    prior: np.ndarray
    minmax: np.ndarray

    @classmethod
    def allocate(cls, batch: int, nodes: int, actions: int) -> _Tree:
        minmax = np.empty((batch, 2))
        minmax[:, 0] = np.inf
        minmax[:, 1] = -np.inf
        return cls(
            children=np.full((batch, nodes, actions), -1, dtype=np.int32),
            parent=np.full((batch, nodes), -1, dtype=np.int32),
            action=np.full((batch, nodes), -1, dtype=np.int32),
            visits=np.zeros((batch, nodes), dtype=np.int32),
            value_sum=np.zeros((batch, nodes)),
            raw_value=np.zeros((batch, nodes)),
            reward=np.zeros((batch, nodes)),
            prior=np.zeros((batch, nodes, actions)),
            minmax=minmax,
        )


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _dirichlet_noise(legal: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """``[B, A]`` Dirichlet(alpha) sample over each row's legal actions (0 elsewhere), drawn
    as normalised Gamma(alpha) variables so rows with different masks need no loop."""
    gam = rng.gamma(alpha, size=legal.shape) * legal
    total = gam.sum(axis=1, keepdims=True)
    uniform = legal / legal.sum(axis=1, keepdims=True)
    # A row whose gammas all underflowed (tiny alpha) falls back to uniform noise.
    return np.where(total > 0, gam / np.where(total > 0, total, 1.0), uniform)


def _gumbel_setup(
    tree: _Tree, legal: np.ndarray, config: SearchConfig, rng: np.random.Generator, explore: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Root scores ``g + log prior`` of the considered actions (``-inf`` for the rest),
    ``[B, A]`` float64, and the per-row sequential-halving targets ``[B, S]`` int32."""
    batch, num_actions = legal.shape
    logp = np.log(np.maximum(tree.prior[:, 0, :], 1e-300))
    if explore and config.gumbel_scale > 0:
        logp = logp + config.gumbel_scale * rng.gumbel(size=(batch, num_actions))
    score = np.where(legal, logp, -np.inf)
    num_legal = legal.sum(axis=1)
    m = np.minimum(config.gumbel_max_considered, num_legal)
    order = np.argsort(-score, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(num_actions)[None, :].repeat(batch, axis=0), axis=1)
    root_score = np.where(rank < m[:, None], score, -np.inf)
    targets = np.stack([_gumbel.schedule(int(k), config.num_simulations) for k in m])
    return np.ascontiguousarray(root_score), np.ascontiguousarray(targets.T)


def _greedy_action(visit_counts: np.ndarray, prior: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[B]`` the most visited action; ties go to the higher prior, and exact ties of both
    to a uniformly random one among them (not to the lowest index, a no-op in most games)."""
    most = visit_counts == visit_counts.max(axis=1, keepdims=True)
    score = np.where(most, prior, -1.0)
    best = score == score.max(axis=1, keepdims=True)
    noise = rng.random(best.shape)
    return np.argmax(np.where(best, noise, -1.0), axis=1).astype(np.int64)


def run_search(
    root: Root,
    recurrent: RecurrentFn,
    config: SearchConfig,
    discount: float,
    rng: np.random.Generator,
    explore: bool,
) -> SearchOutput:
    """Run ``config.num_simulations`` simulations from every root of the batch with the
    config's root algorithm: :func:`puct_search` or :func:`gumbel_search`."""
    search = gumbel_search if config.algorithm == "gumbel" else puct_search
    return search(root, recurrent, config, discount, rng, explore)


def puct_search(
    root: Root, recurrent: RecurrentFn, config: SearchConfig, discount: float, rng: np.random.Generator, explore: bool
) -> SearchOutput:
    """MuZero's search: pUCT selection everywhere, the visit distribution as the target.

    With ``explore`` the root prior is mixed with Dirichlet noise over legal actions and the
    action is sampled from ``visits ** (1 / collect_temperature)``; otherwise the action is the
    most visited one (ties: higher prior, then uniformly at random). Rows are independent; all
    randomness comes from ``rng``.
    """
    run = _Search.start(root, config, discount, rng)
    tree = run.tree
    if explore and config.root_noise_weight > 0:
        w = config.root_noise_weight
        noise = _dirichlet_noise(run.legal, config.dirichlet_alpha, rng)
        tree.prior[:, 0, :] = (1.0 - w) * tree.prior[:, 0, :] + w * noise
    c1, c2 = float(config.pb_c_init), float(config.pb_c_base)

    def select(s: int, parents: np.ndarray, actions: np.ndarray) -> None:
        _tree.select_puct(
            tree.children, tree.visits, tree.value_sum, tree.reward, tree.prior, run.legal, run.tree_legal, tree.minmax,
            run.rng_state, c1, c2, run.discount, parents, actions,
        )  # fmt: skip

    run.simulate(select, recurrent)
    visit_counts, q = run.root_stats()
    policy = visit_counts / visit_counts.sum(axis=1, keepdims=True)
    if explore:
        # Scale by the row maximum first so tiny temperatures cannot underflow every weight.
        weights = (visit_counts / visit_counts.max(axis=1, keepdims=True)) ** (1.0 / config.collect_temperature)
        cdf = np.cumsum(weights, axis=1)
        u = rng.random(run.batch)[:, None] * cdf[:, -1:]
        action = np.minimum((cdf <= u).sum(axis=1), run.num_actions - 1).astype(np.int64)
    else:
        action = _greedy_action(visit_counts, tree.prior[:, 0, :], rng)
    return _output(action, policy, visit_counts, q, run.num_simulations)


def gumbel_search(
    root: Root, recurrent: RecurrentFn, config: SearchConfig, discount: float, rng: np.random.Generator, explore: bool
) -> SearchOutput:
    """Gumbel MuZero's search (``gumbel.py``): sequential halving over Gumbel-perturbed root
    actions, a deterministic choice below the root, the improved policy as the target.

    ``explore`` scales the root Gumbel noise by ``gumbel_scale`` (0 otherwise). Rows are
    independent; all randomness comes from ``rng``.
    """
    run = _Search.start(root, config, discount, rng)
    tree = run.tree
    root_score, targets = _gumbel_setup(tree, run.legal, config, rng, explore)
    c_visit, c_scale = float(config.c_visit), float(config.c_scale)

    def select(s: int, parents: np.ndarray, actions: np.ndarray) -> None:
        _gumbel.select_gumbel(
            tree.children, tree.visits, tree.value_sum, tree.raw_value, tree.reward, tree.prior, run.legal, run.tree_legal,
            root_score, targets[s], c_visit, c_scale, run.discount, parents, actions,
        )  # fmt: skip

    run.simulate(select, recurrent)
    visit_counts, q = run.root_stats()
    policy = np.empty((run.batch, run.num_actions))
    action = np.empty(run.batch, dtype=np.int64)
    _gumbel.gumbel_root_result(
        tree.children, tree.visits, tree.value_sum, tree.raw_value, tree.reward, tree.prior, run.legal,
        root_score, c_visit, c_scale, run.discount, run.rng_state, policy, action,
    )  # fmt: skip
    return _output(action, policy, visit_counts, q, run.num_simulations)


@dataclass
class _Search:
    """One batch of searches in progress: its tree, masks and per-row random states."""

    tree: _Tree
    legal: np.ndarray
    tree_legal: np.ndarray
    rng_state: np.ndarray
    discount: float
    num_simulations: int

    @property
    def batch(self) -> int:
        return self.legal.shape[0]

    @property
    def num_actions(self) -> int:
        return self.legal.shape[1]

    @classmethod
    def start(cls, root: Root, config: SearchConfig, discount: float, rng: np.random.Generator) -> _Search:
        """Check the roots, allocate the tree and initialise its roots."""
        logits = _as_f32(root.prior_logits)
        values = _as_f32(root.value).reshape(-1)
        legal = np.ascontiguousarray(root.legal, dtype=np.bool_)
        tree_legal = legal if root.tree_legal is None else np.ascontiguousarray(root.tree_legal | legal, dtype=np.bool_)
        same = logits.ndim == 2 and legal.shape == logits.shape == tree_legal.shape and values.shape[0] == logits.shape[0]
        if not same:
            raise ValueError(
                f"Root shapes disagree: prior_logits {logits.shape}, legal {legal.shape}, value {values.shape}; "
                "expected [B, A], [B, A] and [B]"
            )
        if not legal.any(axis=1).all():
            raise ValueError("every root needs at least one legal action; rows without any: "
                             f"{np.flatnonzero(~legal.any(axis=1)).tolist()}")  # fmt: skip
        batch, num_actions = logits.shape
        sims = config.num_simulations
        tree = _Tree.allocate(batch, sims + 1, num_actions)
        _tree.init_roots(logits, values, legal, tree.prior, tree.visits, tree.value_sum, tree.raw_value, tree.parent, tree.action)
        rng_state = rng.integers(1, np.iinfo(np.uint64).max, size=batch, dtype=np.uint64, endpoint=True)
        return cls(tree, legal, tree_legal, rng_state, float(discount), sims)

    def simulate(self, select: Callable[[int, np.ndarray, np.ndarray], None], recurrent: RecurrentFn) -> None:
        """The simulations: per simulation ``s``, ``select`` writes one leaf edge per row
        (parent node, action), the model expands it, and the kernel backs the value up."""
        tree, batch, num_actions = self.tree, self.batch, self.num_actions
        for s in range(self.num_simulations):
            parents = np.empty(batch, dtype=np.int32)
            actions = np.empty(batch, dtype=np.int32)
            select(s, parents, actions)
            reward, value, new_logits = recurrent(parents, actions, s + 1)
            reward, value, new_logits = _as_f32(reward).reshape(-1), _as_f32(value).reshape(-1), _as_f32(new_logits)
            # The kernels do not bounds-check, so a wrongly shaped model output must stop here.
            if reward.shape[0] != batch or value.shape[0] != batch or new_logits.shape != (batch, num_actions):
                raise ValueError(
                    f"recurrent returned reward {reward.shape}, value {value.shape}, prior_logits {new_logits.shape}; "
                    f"expected [{batch}], [{batch}], [{batch}, {num_actions}]"
                )
            _tree.expand_backup(
                parents, actions, s + 1, reward, value, new_logits, self.tree_legal,
                tree.children, tree.parent, tree.action, tree.reward, tree.prior, tree.visits, tree.value_sum,
                tree.raw_value, tree.minmax, self.discount,
            )  # fmt: skip

    def root_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Visit counts ``[B, A]`` int32 and Q values ``[B, A]`` of the root actions."""
        tree = self.tree
        visit_counts = np.empty((self.batch, self.num_actions), dtype=np.int32)
        q = np.empty((self.batch, self.num_actions))
        _tree.root_stats(tree.children, tree.visits, tree.value_sum, tree.reward, self.discount, visit_counts, q)
        return visit_counts, q


def _output(action: np.ndarray, policy: np.ndarray, visit_counts: np.ndarray, q: np.ndarray, sims: int) -> SearchOutput:
    """The search's result; the root value is the visit-weighted mean of the root's Q values
    (every simulation passes one root action)."""
    root_value = (visit_counts * q).sum(axis=1) / sims
    policy32 = policy.astype(np.float32)
    policy32 /= policy32.sum(axis=1, keepdims=True)
    return SearchOutput(
        action=action,
        policy_target=policy32,
        root_value=root_value.astype(np.float32),
        visit_counts=visit_counts,
        q_values=q.astype(np.float32),
    )
