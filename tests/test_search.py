"""Tests of ``scalezero.search``: a brute-force pUCT reference, bandits, masking, discount,
determinism and row independence, for both pUCT and Gumbel roots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalezero.config import SearchConfig
from scalezero.search import Root, SearchOutput, run_search

# --------------------------------------------------------------------------------------
# Deterministic fake models keyed by the action path from the root.


def path_outputs(seed: int, path: tuple[int, ...], num_actions: int, reward_scale: float) -> tuple[float, float, np.ndarray]:
    """(reward, value, logits) of the node reached by ``path`` in tree ``seed``; fixed per path."""
    g = np.random.default_rng([seed, len(path), *path])
    reward = float(np.float32(reward_scale * g.normal()))
    value = float(np.float32(reward_scale * g.normal()))
    logits = g.normal(size=num_actions).astype(np.float32)
    return reward, value, logits


class PathModel:
    """Batched recurrent callback over per-row path-keyed trees; checks the node-id contract."""

    def __init__(self, seeds: list[int], num_actions: int, legal: np.ndarray, reward_scale: float = 1.0):
        self.seeds = seeds
        self.num_actions = num_actions
        self.legal = legal
        self.reward_scale = reward_scale
        self.paths: list[dict[int, tuple[int, ...]]] = [{0: ()} for _ in seeds]
        self.calls = 0

    def root(self) -> Root:
        outs = [path_outputs(s, (), self.num_actions, self.reward_scale) for s in self.seeds]
        return Root(
            prior_logits=np.stack([o[2] for o in outs]),
            value=np.array([o[1] for o in outs], dtype=np.float32),
            legal=self.legal.copy(),
        )

    def __call__(self, parents: np.ndarray, actions: np.ndarray, new_node: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert parents.shape == actions.shape == (len(self.seeds),)
        assert new_node == self.calls + 1
        self.calls += 1
        rewards, values, logits = [], [], []
        for b, seed in enumerate(self.seeds):
            p, a = int(parents[b]), int(actions[b])
            assert 0 <= p < new_node and p in self.paths[b]
            assert self.legal[b, a], "search expanded an illegal action"
            path = self.paths[b][p] + (a,)
            self.paths[b][new_node] = path
            r, v, lg = path_outputs(seed, path, self.num_actions, self.reward_scale)
            rewards.append(r)
            values.append(v)
            logits.append(lg)
        return np.array(rewards, np.float32), np.array(values, np.float32), np.stack(logits)


# --------------------------------------------------------------------------------------
# Brute-force pUCT reference: plain Python node objects, written independently.


class RefNode:
    def __init__(self, prior: list[float], reward: float, value: float):
        self.prior = prior
        self.reward = reward
        self.raw_value = value
        self.children: dict[int, RefNode] = {}
        self.visits = 0
        self.value_sum = 0.0

    def mean(self) -> float:
        return self.value_sum / self.visits


def ref_softmax(logits: np.ndarray, legal: np.ndarray) -> list[float]:
    legal_logits = [float(x) for x, ok in zip(logits, legal) if ok]
    top = max(legal_logits)
    z = sum(math.exp(x - top) for x in legal_logits)
    return [math.exp(float(x) - top) / z if ok else 0.0 for x, ok in zip(logits, legal)]


def ref_puct(seed: int, legal: np.ndarray, sims: int, discount: float, cfg: SearchConfig, reward_scale: float):
    """Returns (root visit counts, action, root value) of the reference search on tree ``seed``."""
    num_actions = len(legal)
    _, v0, lg0 = path_outputs(seed, (), num_actions, reward_scale)
    root = RefNode(ref_softmax(lg0, legal), 0.0, v0)
    root.visits, root.value_sum = 1, v0  # the root's own evaluation counts as a visit
    lo, hi = math.inf, -math.inf

    def normalise(q: float) -> float:
        if hi < lo:
            return 0.0
        return min(1.0, max(0.0, (q - lo) / max(hi - lo, 0.01)))

    for _ in range(sims):
        node, path, actions = root, [root], []
        while True:
            big_n = node.visits
            explore_term = math.sqrt(big_n) * (cfg.pb_c_init + math.log((big_n + cfg.pb_c_base + 1) / cfg.pb_c_base))
            scores = {}
            for a in range(num_actions):
                if not legal[a]:
                    continue
                child = node.children.get(a)
                if child is None:
                    q, n = node.mean(), 0
                else:
                    q, n = child.reward + discount * child.mean(), child.visits
                scores[a] = normalise(q) + node.prior[a] * explore_term / (1 + n)
            best = max(scores.values())
            a = min(a for a, sc in scores.items() if sc == best)
            actions.append(a)
            if a not in node.children:
                break
            node = node.children[a]
            path.append(node)
        r, v, lg = path_outputs(seed, tuple(actions), num_actions, reward_scale)
        leaf = RefNode(ref_softmax(lg, legal), r, v)
        node.children[actions[-1]] = leaf
        path.append(leaf)
        ret = v
        for nd in reversed(path):
            nd.visits += 1
            nd.value_sum += ret
            if nd is not root:
                q = nd.reward + discount * nd.mean()
                lo, hi = min(lo, q), max(hi, q)
                ret = nd.reward + discount * ret
    visits = [root.children[a].visits if a in root.children else 0 for a in range(num_actions)]
    qs = [root.children[a].reward + discount * root.children[a].mean() if a in root.children else 0.0 for a in range(num_actions)]
    action = max(range(num_actions), key=lambda a: (visits[a], root.prior[a], -a))
    root_value = sum(n * q for n, q in zip(visits, qs)) / sims
    return visits, action, root_value


@pytest.mark.parametrize(
    "num_actions,sims,discount,reward_scale",
    [(2, 6, 0.9, 1.0), (3, 12, 0.997, 1.0), (4, 20, 0.95, 1.0), (4, 30, 0.997, 0.002), (3, 25, 1.0, 5.0)],
)
def test_puct_matches_bruteforce_reference(num_actions: int, sims: int, discount: float, reward_scale: float) -> None:
    seeds = [11, 12, 13, 14, 15, 16]
    legal = np.ones((len(seeds), num_actions), dtype=bool)
    legal[1, 0] = False
    legal[3, -1] = False
    model = PathModel(seeds, num_actions, legal, reward_scale)
    cfg = SearchConfig(algorithm="puct", num_simulations=sims)
    out = run_search(model.root(), model, cfg, discount, np.random.default_rng(0), explore=False)
    for b, seed in enumerate(seeds):
        visits, action, root_value = ref_puct(seed, legal[b], sims, discount, cfg, reward_scale)
        assert out.visit_counts[b].tolist() == visits, f"row {b}"
        assert int(out.action[b]) == action
        assert out.root_value[b] == pytest.approx(root_value, rel=1e-5, abs=1e-5)
    assert model.calls == sims


# --------------------------------------------------------------------------------------
# Bandits, masks, discount, determinism, independence.


def bandit(batch: int, num_actions: int, best: int):
    """Reward 1 for ``best`` taken at the root, 0 everywhere else; flat priors, value 0."""

    def recurrent(parents: np.ndarray, actions: np.ndarray, new_node: int):
        r = ((parents == 0) & (actions == best)).astype(np.float32)
        return r, np.zeros(batch, np.float32), np.zeros((batch, num_actions), np.float32)

    root = Root(np.zeros((batch, num_actions), np.float32), np.zeros(batch, np.float32), np.ones((batch, num_actions), bool))
    return root, recurrent


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_bandit_best_action(algorithm: str) -> None:
    root, rec = bandit(3, 6, best=4)
    cfg = SearchConfig(algorithm=algorithm, num_simulations=50)
    out = run_search(root, rec, cfg, 0.997, np.random.default_rng(1), explore=False)
    assert out.action.tolist() == [4, 4, 4]
    assert (out.visit_counts.argmax(axis=1) == 4).all()
    assert (out.policy_target.argmax(axis=1) == 4).all()
    if algorithm == "puct":
        assert (out.visit_counts[:, 4] > 25).all()
    np.testing.assert_allclose(out.q_values[:, 4], 1.0, atol=1e-6)
    np.testing.assert_allclose(out.policy_target.sum(axis=1), 1.0, atol=1e-6)


def test_gumbel_clearly_best_action_with_learned_priors_against_it() -> None:
    """The prior favours action 0, but action 2's value is much higher: Gumbel eval picks 2."""
    batch, num_actions = 2, 4

    def rec(parents, actions, new_node):
        r = np.where((parents == 0) & (actions == 2), 1.0, 0.0).astype(np.float32)
        return r, np.zeros(batch, np.float32), np.zeros((batch, num_actions), np.float32)

    logits = np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (batch, 1))
    root = Root(logits, np.zeros(batch, np.float32), np.ones((batch, num_actions), bool))
    out = run_search(root, rec, SearchConfig(algorithm="gumbel", num_simulations=16), 0.99, np.random.default_rng(0), False)
    assert out.action.tolist() == [2, 2]
    assert (out.policy_target.argmax(axis=1) == 2).all()


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
@pytest.mark.parametrize("explore", [True, False])
def test_masked_actions_get_nothing(algorithm: str, explore: bool) -> None:
    num_actions = 6
    legal = np.array(
        [
            [1, 1, 1, 1, 1, 1],
            [0, 1, 0, 1, 0, 1],
            [0, 0, 0, 0, 1, 0],  # a single legal action
            [1, 1, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    seeds = [1, 2, 3, 4]
    model = PathModel(seeds, num_actions, legal)  # asserts every expanded action is legal
    root = model.root()
    root.prior_logits = np.where(legal, root.prior_logits, 10.0).astype(np.float32)  # tempting illegal logits
    cfg = SearchConfig(algorithm=algorithm, num_simulations=20, gumbel_max_considered=4)
    out = run_search(root, model, cfg, 0.99, np.random.default_rng(5), explore)
    assert isinstance(out, SearchOutput)
    assert (out.visit_counts[~legal] == 0).all()
    assert (out.policy_target[~legal] == 0).all()
    assert (out.q_values[~legal] == 0).all()
    np.testing.assert_allclose(out.policy_target.sum(axis=1), 1.0, atol=1e-6)
    assert (out.policy_target >= 0).all()
    assert legal[np.arange(len(seeds)), out.action].all()
    assert out.action[2] == 4
    assert (out.visit_counts.sum(axis=1) == 20).all()
    assert out.action.dtype == np.int64 and out.visit_counts.dtype == np.int32
    assert out.policy_target.dtype == out.root_value.dtype == out.q_values.dtype == np.float32


class TwoMaskModel(PathModel):
    """Root actions must be in ``root_legal``; deeper nodes only in ``tree_legal``."""

    def __init__(self, seeds, num_actions, root_legal, tree_legal):
        super().__init__(seeds, num_actions, tree_legal)
        self.root_legal = root_legal
        self.deeper_actions: set[int] = set()

    def __call__(self, parents, actions, new_node):
        for b in range(len(self.seeds)):
            if parents[b] == 0:
                assert self.root_legal[b, actions[b]], "root expanded an action illegal now"
            else:
                self.deeper_actions.add(int(actions[b]))
        return super().__call__(parents, actions, new_node)


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
@pytest.mark.parametrize("explore", [True, False])
def test_root_mask_differs_from_the_mask_below_the_root(algorithm: str, explore: bool) -> None:
    """A text game allows some commands now (root) but others later (inside the tree)."""
    tree_legal = np.ones((3, 5), dtype=bool)
    tree_legal[:, 4] = False  # never legal for this task
    root_legal = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 1, 0]], dtype=bool)
    model = TwoMaskModel([7, 8, 9], 5, root_legal, tree_legal)
    root = model.root()
    root.legal = root_legal
    root.tree_legal = tree_legal
    root.prior_logits = np.where(root_legal, root.prior_logits, 10.0).astype(np.float32)
    out = run_search(root, model, SearchConfig(algorithm=algorithm, num_simulations=40), 0.99, np.random.default_rng(1), explore)
    assert (out.visit_counts[~root_legal] == 0).all() and (out.policy_target[~root_legal] == 0).all()
    assert root_legal[np.arange(3), out.action].all()
    assert model.deeper_actions - {0, 1, 2, 3} == set()  # never the task-illegal action
    assert model.deeper_actions & {0, 3}  # actions illegal at some roots are used deeper down


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_discount_two_step_chain(algorithm: str) -> None:
    """Only one legal action: root -> child (r=1, v=0.5) -> grandchild (r=2, v=3)."""
    gamma = 0.9
    table = {1: (1.0, 0.5), 2: (2.0, 3.0)}

    def rec(parents, actions, new_node):
        assert parents.tolist() == [new_node - 1] and actions.tolist() == [1]
        r, v = table[new_node]
        return np.array([r], np.float32), np.array([v], np.float32), np.zeros((1, 3), np.float32)

    root = Root(np.zeros((1, 3), np.float32), np.array([7.0], np.float32), np.array([[False, True, False]]))
    out = run_search(root, rec, SearchConfig(algorithm=algorithm, num_simulations=2), gamma, np.random.default_rng(0), True)
    # Returns through the root: 1 + 0.9 * 0.5 and 1 + 0.9 * (2 + 0.9 * 3); Q = their mean.
    expected = ((1 + gamma * 0.5) + (1 + gamma * (2 + gamma * 3))) / 2
    assert out.root_value[0] == pytest.approx(expected, rel=1e-6)
    assert out.q_values[0, 1] == pytest.approx(expected, rel=1e-6)
    assert out.visit_counts[0].tolist() == [0, 2, 0]
    assert out.action[0] == 1


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_same_seed_same_output(algorithm: str) -> None:
    legal = np.ones((3, 5), bool)
    legal[0, 2] = False
    outs = []
    for _ in range(2):
        model = PathModel([7, 8, 9], 5, legal)
        cfg = SearchConfig(algorithm=algorithm, num_simulations=15)
        outs.append(run_search(model.root(), model, cfg, 0.99, np.random.default_rng(123), explore=True))
    for field in ("action", "policy_target", "root_value", "visit_counts", "q_values"):
        np.testing.assert_array_equal(getattr(outs[0], field), getattr(outs[1], field))


@pytest.mark.parametrize("algorithm", ["puct", "gumbel"])
def test_rows_are_independent_in_evaluation(algorithm: str) -> None:
    legal = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 1, 0]], bool)
    seeds = [21, 22, 23]
    cfg = SearchConfig(algorithm=algorithm, num_simulations=12, gumbel_max_considered=2)
    model = PathModel(seeds, 4, legal)
    together = run_search(model.root(), model, cfg, 0.95, np.random.default_rng(0), explore=False)
    for b, seed in enumerate(seeds):
        alone_model = PathModel([seed], 4, legal[b : b + 1])
        alone = run_search(alone_model.root(), alone_model, cfg, 0.95, np.random.default_rng(99), explore=False)
        for field in ("action", "policy_target", "root_value", "visit_counts", "q_values"):
            np.testing.assert_array_equal(getattr(alone, field)[0], getattr(together, field)[b])


def test_explore_noise_changes_puct_and_temperature_sampling_is_legal() -> None:
    root, rec = bandit(64, 5, best=1)
    cfg = SearchConfig(algorithm="puct", num_simulations=8, collect_temperature=1.0)
    out = run_search(root, rec, cfg, 0.99, np.random.default_rng(3), explore=True)
    # Dirichlet noise makes identical roots search differently.
    assert len({tuple(v) for v in out.visit_counts.tolist()}) > 1
    sampled_visits = out.visit_counts[np.arange(64), out.action]
    assert (sampled_visits > 0).all()


def test_gumbel_sequential_halving_splits_visits() -> None:
    """m = 4 considered, 8 simulations: phase 1 visits all 4 once, phase 2 gives 2 more to 2."""
    batch, num_actions = 2, 4

    def rec(parents, actions, new_node):
        return np.zeros(batch, np.float32), np.zeros(batch, np.float32), np.zeros((batch, num_actions), np.float32)

    root = Root(np.zeros((batch, num_actions), np.float32), np.zeros(batch, np.float32), np.ones((batch, num_actions), bool))
    cfg = SearchConfig(algorithm="gumbel", num_simulations=8, gumbel_max_considered=4)
    out = run_search(root, rec, cfg, 0.99, np.random.default_rng(0), explore=True)
    assert sorted(out.visit_counts[0].tolist()) == [1, 1, 3, 3]
    assert sorted(out.visit_counts[1].tolist()) == [1, 1, 3, 3]
    assert (out.visit_counts[np.arange(batch), out.action] == 3).all()


def test_rejects_row_without_legal_actions() -> None:
    root, rec = bandit(2, 3, best=0)
    root.legal[1] = False
    with pytest.raises(ValueError, match="legal"):
        run_search(root, rec, SearchConfig(), 0.99, np.random.default_rng(0), explore=False)


def test_rejects_wrongly_shaped_model_output() -> None:
    root, _ = bandit(2, 3, best=0)

    def bad(parents, actions, new_node):
        return np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros((2, 4), np.float32)

    with pytest.raises(ValueError, match="recurrent returned"):
        run_search(root, bad, SearchConfig(), 0.99, np.random.default_rng(0), explore=False)


# --------------------------------------------------------------------------------------
# Gumbel root against mctx's formulas, computed independently in numpy.


def mctx_improved_policy(logits, q, visits, raw_value, c_visit=50.0, c_scale=0.1):
    """softmax(logits + sigma(completed Q)) as mctx's qtransform_completed_by_mix_value defines it:
    unvisited actions get the mixed value, the completed Q is rescaled by max(range, 1e-8)."""
    prior = np.exp(logits - logits.max())
    prior /= prior.sum()
    seen = visits > 0
    mixed = (raw_value + visits.sum() * (prior[seen] * q[seen]).sum() / prior[seen].sum()) / (1 + visits.sum())
    completed = np.where(seen, q, mixed)
    scaled = (completed - completed.min()) / max(completed.max() - completed.min(), 1e-8)
    z = logits + (c_visit + visits.max()) * c_scale * scaled
    e = np.exp(z - z.max())
    return e / e.sum()


def test_gumbel_improved_policy_matches_hand_computed_numbers_for_small_value_gaps() -> None:
    """Three actions, three simulations: each is visited once. Q = (0.001, 0.002, 0), so the
    normalised Q is (0.5, 1, 0) and sigma = (50 + 1) * 0.1 * that = (2.55, 5.1, 0): the target
    moves far from the uniform prior although the returns differ by a thousandth."""
    rewards = np.array([0.001, 0.002, 0.0], np.float32)

    def rec(parents, actions, new_node):
        return rewards[actions], np.zeros(1, np.float32), np.zeros((1, 3), np.float32)

    root = Root(np.zeros((1, 3), np.float32), np.zeros(1, np.float32), np.ones((1, 3), bool))
    out = run_search(root, rec, SearchConfig(algorithm="gumbel", num_simulations=3), 0.997, np.random.default_rng(0), explore=False)
    assert out.visit_counts.tolist() == [[1, 1, 1]]
    hand = np.exp([2.55, 5.1, 0.0]) / np.exp([2.55, 5.1, 0.0]).sum()
    np.testing.assert_allclose(out.policy_target[0], hand, rtol=1e-5)
    assert out.policy_target[0, 1] > 0.9 and out.action.tolist() == [1]


def test_gumbel_mixed_value_completes_unvisited_actions() -> None:
    """Four actions, two considered (the top-2 prior logits), two simulations: the unvisited
    pair gets mctx's mixed value; the target is checked against the numpy formula."""
    logits = np.array([[1.0, 0.5, -0.3, 0.2]], np.float32)
    child = {0: (0.3, 0.5), 1: (-0.2, 1.0)}  # action -> (reward, value)

    def rec(parents, actions, new_node):
        r, v = child[int(actions[0])]
        return np.array([r], np.float32), np.array([v], np.float32), np.zeros((1, 4), np.float32)

    root = Root(logits, np.array([0.4], np.float32), np.ones((1, 4), bool))
    cfg = SearchConfig(algorithm="gumbel", num_simulations=2, gumbel_max_considered=2)
    out = run_search(root, rec, cfg, 0.9, np.random.default_rng(0), explore=False)
    assert out.visit_counts.tolist() == [[1, 1, 0, 0]]
    q = np.array([0.3 + 0.9 * 0.5, -0.2 + 0.9 * 1.0, 0.0, 0.0])
    expected = mctx_improved_policy(logits[0].astype(np.float64), q, out.visit_counts[0], 0.4)
    np.testing.assert_allclose(out.policy_target[0], expected, rtol=1e-5)


@pytest.mark.parametrize("m,sims", [(2, 8), (3, 16), (4, 16), (5, 25), (16, 16), (16, 50), (6, 7)])
def test_gumbel_schedule_matches_mctx_sequential_halving(m: int, sims: int) -> None:
    """mctx's get_sequence_of_considered_visits, written out again here."""
    from scalezero.search.gumbel import schedule

    log2m = math.ceil(math.log2(m))
    seq, visits, k = [], [0] * m, m
    while len(seq) < sims:
        for _ in range(max(1, int(sims / (log2m * k)))):
            seq += visits[:k]
            visits[:k] = [v + 1 for v in visits[:k]]
        k = max(2, k // 2)
    assert schedule(m, sims).tolist() == seq[:sims]


def test_greedy_ties_break_at_random() -> None:
    """Equal visits and equal priors: evaluation must not always pick action 0."""
    batch, num_actions = 64, 3

    def rec(parents, actions, new_node):
        return np.zeros(batch, np.float32), np.zeros(batch, np.float32), np.zeros((batch, num_actions), np.float32)

    root = Root(np.zeros((batch, num_actions), np.float32), np.zeros(batch, np.float32), np.ones((batch, num_actions), bool))
    for algorithm, sims in (("puct", 3), ("gumbel", 3)):
        out = run_search(root, rec, SearchConfig(algorithm=algorithm, num_simulations=sims), 0.99, np.random.default_rng(0), explore=False)
        assert set(out.action.tolist()) == {0, 1, 2}, algorithm
