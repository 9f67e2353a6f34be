"""Flat-array search trees and the numba kernels that walk them.

A batch of ``B`` independent trees lives in preallocated arrays; node ``0`` of every row
is the root and the node created at simulation ``s`` is node ``s + 1``, so
``N = num_simulations + 1`` slots are always enough. Arrays (``A`` = number of actions):

* ``children``  ``[B, N, A]`` int32 -- child node id, ``-1`` while the edge is unexpanded
* ``parent``    ``[B, N]``    int32 -- parent node id (``-1`` for the root)
* ``action``    ``[B, N]``    int32 -- action that led from the parent to the node
* ``visits``    ``[B, N]``    int32 -- visit count; the root's own evaluation counts as one,
  so every node satisfies ``visits = 1 + sum(visits of its children)``
* ``value_sum`` ``[B, N]``    float64 -- sum of the returns backed up through the node
* ``raw_value`` ``[B, N]``    float64 -- the model's value at the node (Gumbel mixed value)
* ``reward``    ``[B, N]``    float64 -- reward on the edge into the node
* ``prior``     ``[B, N, A]`` float64 -- softmax of the model logits over legal actions
* ``minmax``    ``[B, 2]``    float64 -- (min, max) of every backed-up Q of the row's tree
* ``rng_state`` ``[B]``       uint64 -- xorshift state for random tie-breaking

Why numba and not vectorised numpy
----------------------------------
Selection is a walk whose depth differs per row and whose every step is an argmax over a
handful of actions, so it maps badly onto array operations. A vectorised-numpy version
(selection and backup advance all still-active rows one tree level at a time with masks
and fancy indexing) was measured against these kernels on the benchmark workload (pUCT,
50 simulations, 18 actions, one pinned core of a shared 2-core machine). Numpy reached
about 0.10M simulations/s at B=64 and 0.23M at B=256 (0.6-1.1 ms per simulation step,
spent in a few dozen small numpy calls per tree level, each with microseconds of fixed
overhead); these kernels reach about 2.2M simulations/s at both sizes (about 30 us per
simulation step at B=64, two kernel calls and no Python per row or per level), i.e.
10-20x faster. Numba is therefore used, with ``cache=True`` so the compile cost (a few
seconds) is paid once per machine.

Why loose arrays and not one tree struct
----------------------------------------
The kernels take the tree's arrays one by one, which makes their parameter lists long. One
``NamedTuple`` of the arrays, passed as a single argument, was tried (2026-12-04): numba's
dispatcher types a tuple argument in Python on every call, 4-6 us per call against 0.9 us
for nine separate arrays (a kernel that reads two of them, 20,000 calls, one core). With two
kernel calls per simulation that would add about a third to the tree's cost at B=64, so the
arrays stay separate and ``mcts.py`` keeps them together on the Python side (``_Tree``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit  # nogil=True throughout: the tree runs beside the learner thread of train.overlap

QNORM_MIN_DELTA = 0.01
"""Small-delta rule of the Q normalisation: values are mapped to ``(q - lo) / max(hi - lo,
QNORM_MIN_DELTA)`` and clipped to ``[0, 1]``. When the Q values seen so far differ by
less than this, their differences are therefore *not* blown up to the full ``[0, 1]``
range (which would let noise of 1e-6 outweigh the priors); they stay proportionally
small. Before any Q has been backed up, every normalised Q is 0."""

_TWO_POW_M53 = 1.0 / 9007199254740992.0


@njit(cache=True, nogil=True, inline="always")
def _uniform(rng_state: np.ndarray, b: int) -> float:
    """Next uniform in ``[0, 1)`` of row ``b``'s xorshift64 generator (state updated in place)."""
    x = rng_state[b]
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    rng_state[b] = x
    return float(x >> np.uint64(11)) * _TWO_POW_M53


@njit(cache=True, nogil=True, inline="always")
def _masked_softmax(logits: np.ndarray, legal: np.ndarray, out: np.ndarray) -> None:
    """``out[a] = softmax(logits[legal])`` at legal ``a``, 0 elsewhere (shapes ``[A]``)."""
    m = -np.inf
    for a in range(logits.shape[0]):
        if legal[a] and logits[a] > m:
            m = logits[a]
    total = 0.0
    for a in range(logits.shape[0]):
        if legal[a]:
            e = math.exp(float(logits[a]) - m)
            out[a] = e
            total += e
        else:
            out[a] = 0.0
    for a in range(logits.shape[0]):
        out[a] /= total


@njit(cache=True, nogil=True)
def init_roots(
    logits: np.ndarray,
    values: np.ndarray,
    legal: np.ndarray,
    prior: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    raw_value: np.ndarray,
    parent: np.ndarray,
    action: np.ndarray,
) -> None:
    """Write node 0 of every row: masked softmax prior, one visit worth the model value.

    ``logits [B, A]`` float32, ``values [B]`` float32, ``legal [B, A]`` bool.
    """
    for b in range(logits.shape[0]):
        _masked_softmax(logits[b], legal[b], prior[b, 0])
        visits[b, 0] = 1
        value_sum[b, 0] = values[b]
        raw_value[b, 0] = values[b]
        parent[b, 0] = -1
        action[b, 0] = -1


@njit(cache=True, nogil=True)
def select_puct(
    children: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    reward: np.ndarray,
    prior: np.ndarray,
    root_legal: np.ndarray,
    legal: np.ndarray,
    minmax: np.ndarray,
    rng_state: np.ndarray,
    c1: float,
    c2: float,
    discount: float,
    out_parent: np.ndarray,
    out_action: np.ndarray,
) -> None:
    """Descend every row's tree by pUCT until an unexpanded edge; write it to the outputs.

    score(a) = Qn(a) + P(a) * sqrt(N) / (1 + n(a)) * (c1 + log((N + c2 + 1) / c2)), with
    N the node's visits, Q(a) = r(a) + discount * V(child) and V = value_sum / visits. An
    unvisited child gets the node's own mean value V(node) as its Q. Qn is the min-max
    normalisation of the row (see ``QNORM_MIN_DELTA``). Illegal actions are skipped (at the
    root by ``root_legal``, below it by ``legal``); exact score ties are broken uniformly at
    random with the row's generator.
    ``out_parent [B]`` / ``out_action [B]`` int32 receive the leaf edge of each row.
    """
    num_actions = children.shape[2]
    for b in range(children.shape[0]):
        lo = minmax[b, 0]
        hi = minmax[b, 1]
        has_stats = hi >= lo
        inv = 1.0 / max(hi - lo, QNORM_MIN_DELTA)
        node = 0
        while True:
            n_node = visits[b, node]
            factor = math.sqrt(n_node) * (c1 + math.log((n_node + c2 + 1.0) / c2))
            default_qn = 0.0
            if has_stats:
                default_qn = min(max((value_sum[b, node] / n_node - lo) * inv, 0.0), 1.0)
            best = -np.inf
            best_a = -1
            ties = 0
            mask = root_legal if node == 0 else legal
            for a in range(num_actions):
                if not mask[b, a]:
                    continue
                c = children[b, node, a]
                if c < 0:
                    score = default_qn + prior[b, node, a] * factor
                else:
                    n = visits[b, c]
                    qn = 0.0
                    if has_stats:
                        q = reward[b, c] + discount * value_sum[b, c] / n
                        qn = min(max((q - lo) * inv, 0.0), 1.0)
                    score = qn + prior[b, node, a] * factor / (1.0 + n)
                if score > best:
                    best = score
                    best_a = a
                    ties = 1
                elif score == best:
                    ties += 1
                    if _uniform(rng_state, b) * ties < 1.0:
                        best_a = a
            nxt = children[b, node, best_a]
            if nxt < 0:
                out_parent[b] = node
                out_action[b] = best_a
                break
            node = nxt


@njit(cache=True, nogil=True)
def expand_backup(
    parents: np.ndarray,
    actions: np.ndarray,
    new_node: int,
    new_reward: np.ndarray,
    new_value: np.ndarray,
    new_logits: np.ndarray,
    legal: np.ndarray,
    children: np.ndarray,
    parent: np.ndarray,
    action: np.ndarray,
    reward: np.ndarray,
    prior: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    raw_value: np.ndarray,
    minmax: np.ndarray,
    discount: float,
) -> None:
    """Attach node ``new_node`` under ``(parents[b], actions[b])`` in every row and back up.

    ``new_reward [B]``, ``new_value [B]`` float32 and ``new_logits [B, A]`` float32 come from
    the model. The return G starts at the leaf value and becomes ``r + discount * G`` at
    each step up; every node on the path gets one visit and G added to its value sum, and
    the row's min-max statistics see every non-root node's updated Q = r + discount * V.
    """
    for b in range(parents.shape[0]):
        p = parents[b]
        a = actions[b]
        n = new_node
        children[b, p, a] = n
        parent[b, n] = p
        action[b, n] = a
        reward[b, n] = new_reward[b]
        raw_value[b, n] = new_value[b]
        _masked_softmax(new_logits[b], legal[b], prior[b, n])
        g = float(new_value[b])
        node = n
        while True:
            visits[b, node] += 1
            value_sum[b, node] += g
            if node == 0:
                break
            q = reward[b, node] + discount * value_sum[b, node] / visits[b, node]
            minmax[b, 0] = min(minmax[b, 0], q)
            minmax[b, 1] = max(minmax[b, 1], q)
            g = reward[b, node] + discount * g
            node = parent[b, node]


@njit(cache=True, nogil=True)
def root_stats(
    children: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    reward: np.ndarray,
    discount: float,
    out_visits: np.ndarray,
    out_q: np.ndarray,
) -> None:
    """Per root action: visit count ``out_visits [B, A]`` int32 and Q ``out_q [B, A]``
    float64 (0 where unvisited)."""
    for b in range(children.shape[0]):
        for a in range(children.shape[2]):
            c = children[b, 0, a]
            if c < 0:
                out_visits[b, a] = 0
                out_q[b, a] = 0.0
            else:
                out_visits[b, a] = visits[b, c]
                out_q[b, a] = reward[b, c] + discount * value_sum[b, c] / visits[b, c]
