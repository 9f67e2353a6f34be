"""Gumbel MuZero pieces (Danihelka et al., 2022): root sequential halving, deterministic
interior selection and the improved-policy target, over the flat trees of ``tree.py``.

Conventions (all per node, over its legal actions):

* completed Q: a visited action keeps Q(a) = r(a) + discount * V(child); an unvisited one
  gets the mixed value estimate of the paper,
  ``v_mix = (v_hat + (sum_b N(b)) * sum_{visited} pi(b) q(b) / sum_{visited} pi(b)) / (1 + sum_b N(b))``
  with ``v_hat`` the model's value at the node and ``pi`` the prior (``v_mix = v_hat``
  before any child is visited);
* the completed Q values are min-max normalised *over the node's legal children* with
  mctx's floor of ``1e-8`` on the range (``QTRANSFORM_EPSILON``);
* ``sigma(q) = (c_visit + max_b N(b)) * c_scale * q_normalised``;
* improved policy ``pi' = softmax(log pi + sigma(completed q))`` over legal actions;
* interior nodes pick ``argmax_a pi'(a) - N(a) / (1 + sum_b N(b))`` (lowest index on ties).

At the root, the ``m`` considered actions (top-m of ``g + log pi``) run sequential halving:
``schedule(m, S)`` lists, per simulation, the visit count an action must currently have to
be eligible; among eligible considered actions the one with the highest
``g + log pi + sigma(q)`` is simulated. Because eliminated actions stop receiving visits,
"eligible" is exactly "still in the current phase", so elimination needs no extra state.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit  # nogil=True throughout: the tree runs beside the learner thread of train.overlap

from scalezero.search.tree import _masked_softmax, _uniform

_LOG_FLOOR = 1e-300

QTRANSFORM_EPSILON = 1e-8
"""Floor of the range in the completed-Q rescaling (mctx's ``qtransform_completed_by_mix_value``):
completed Q values are mapped to ``(q - lo) / max(hi - lo, 1e-8)``, so any value gap among a
node's actions spans the full ``[0, 1]`` and sigma(q) can move the improved policy away from
the prior even when returns differ by 1e-3 (sparse rewards, discount 0.997). A floor of 0.01,
as pUCT's min-max normalisation uses, kept such gaps at a few percent of that range and the
improved policy collapsed onto the prior at 8-16 simulations."""


@lru_cache(maxsize=256)
def schedule(num_considered: int, num_simulations: int) -> np.ndarray:
    """Target visit count of the simulated root action for each simulation, ``[S]`` int32.

    Sequential halving as mctx schedules it: ``ceil(log2(m))`` phases over ``m`` considered
    actions; each phase gives each of its ``k`` actions ``max(1, floor(S / (log2m * k)))``
    more visits, round-robin by rounds, then keeps ``max(2, k // 2)`` actions; phases repeat
    (with at least two actions) until ``S`` entries exist, and the list is cut at ``S``.
    With ``m == 1`` the single action gets every simulation.
    """
    m, s_total = num_considered, num_simulations
    if m <= 1:
        return np.arange(s_total, dtype=np.int32)
    log2m = math.ceil(math.log2(m))
    out: list[int] = []
    visits = [0] * m
    k = m
    while len(out) < s_total:
        for _ in range(max(1, s_total // (log2m * k))):
            out.extend(visits[:k])
            for i in range(k):
                visits[i] += 1
        k = max(2, k // 2)
    arr = np.asarray(out[:s_total], dtype=np.int32)
    arr.setflags(write=False)
    return arr


@njit(cache=True, nogil=True)
def _completed_qn(
    b: int,
    node: int,
    children: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    raw_value: np.ndarray,
    reward: np.ndarray,
    prior: np.ndarray,
    legal: np.ndarray,
    discount: float,
    out_qn: np.ndarray,
) -> tuple[int, int]:
    """Normalised completed Q of ``node``'s actions into ``out_qn [A]``; returns (sum N, max N)."""
    num_actions = children.shape[2]
    sum_n = 0
    max_n = 0
    sum_p = 0.0
    sum_pq = 0.0
    sum_q = 0.0
    num_visited = 0
    for a in range(num_actions):
        c = children[b, node, a]
        if legal[b, a] and c >= 0:
            n = visits[b, c]
            q = reward[b, c] + discount * value_sum[b, c] / n
            out_qn[a] = q
            sum_n += n
            max_n = max(max_n, n)
            sum_p += prior[b, node, a]
            sum_pq += prior[b, node, a] * q
            sum_q += q
            num_visited += 1
    v_mix = raw_value[b, node]
    if sum_n > 0:
        weighted = sum_pq / sum_p if sum_p > 0.0 else sum_q / num_visited
        v_mix = (raw_value[b, node] + sum_n * weighted) / (1.0 + sum_n)
    lo = np.inf
    hi = -np.inf
    for a in range(num_actions):
        if not legal[b, a]:
            out_qn[a] = 0.0
            continue
        if children[b, node, a] < 0:
            out_qn[a] = v_mix
        lo = min(lo, out_qn[a])
        hi = max(hi, out_qn[a])
    inv = 1.0 / max(hi - lo, QTRANSFORM_EPSILON)
    for a in range(num_actions):
        if legal[b, a]:
            out_qn[a] = (out_qn[a] - lo) * inv
    return sum_n, max_n


@njit(cache=True, nogil=True)
def _improved_policy(b: int, node: int, prior: np.ndarray, legal: np.ndarray, logits_sigma: np.ndarray, out: np.ndarray) -> None:
    """``out [A] = softmax(log prior + logits_sigma)`` over legal actions (``logits_sigma``
    holds sigma(q) on entry and is overwritten with the full logits)."""
    for a in range(out.shape[0]):
        if legal[b, a]:
            logits_sigma[a] += math.log(max(prior[b, node, a], _LOG_FLOOR))
    _masked_softmax(logits_sigma, legal[b], out)


@njit(cache=True, nogil=True, inline="always")
def _child_visits(children: np.ndarray, visits: np.ndarray, b: int, node: int, a: int) -> int:
    """Visit count of edge ``(node, a)`` in row ``b``; 0 while the child is unexpanded."""
    c = children[b, node, a]
    return 0 if c < 0 else visits[b, c]


@njit(cache=True, nogil=True)
def _sigma_q(
    b: int,
    node: int,
    children: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    raw_value: np.ndarray,
    reward: np.ndarray,
    prior: np.ndarray,
    legal: np.ndarray,
    discount: float,
    c_visit: float,
    c_scale: float,
    out: np.ndarray,
) -> int:
    """``out [A] = sigma(completed normalised Q) = (c_visit + max_b N(b)) * c_scale * q``;
    returns the node's total child visits."""
    sum_n, max_n = _completed_qn(b, node, children, visits, value_sum, raw_value, reward, prior, legal, discount, out)
    scale = (c_visit + max_n) * c_scale
    for a in range(out.shape[0]):
        out[a] *= scale
    return sum_n


@njit(cache=True, nogil=True)
def select_gumbel(
    children: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    raw_value: np.ndarray,
    reward: np.ndarray,
    prior: np.ndarray,
    root_legal: np.ndarray,
    legal: np.ndarray,
    root_score: np.ndarray,
    target: np.ndarray,
    c_visit: float,
    c_scale: float,
    discount: float,
    out_parent: np.ndarray,
    out_action: np.ndarray,
) -> None:
    """One Gumbel simulation's descent per row; writes the unexpanded leaf edge.

    ``root_score [B, A]`` float64 = g + log prior for considered root actions, -inf for the
    others; ``target [B]`` int32 = visit count an action must have to be simulated now
    (from :func:`schedule`). Interior nodes use the deterministic rule of the module doc.
    ``root_legal`` masks the root's actions, ``legal`` those of every other node.
    """
    num_actions = children.shape[2]
    sq = np.empty(num_actions)
    pol = np.empty(num_actions)
    for b in range(children.shape[0]):
        _sigma_q(b, 0, children, visits, value_sum, raw_value, reward, prior, root_legal, discount, c_visit, c_scale, sq)
        best = -np.inf
        best_a = -1
        fallback = -np.inf
        fallback_a = -1
        for a in range(num_actions):
            if root_score[b, a] == -np.inf:
                continue
            s = root_score[b, a] + sq[a]
            if _child_visits(children, visits, b, 0, a) == target[b] and s > best:
                best = s
                best_a = a
            if s > fallback:
                fallback = s
                fallback_a = a
        if best_a < 0:
            best_a = fallback_a
        node = 0
        a_sel = best_a
        while True:
            nxt = children[b, node, a_sel]
            if nxt < 0:
                out_parent[b] = node
                out_action[b] = a_sel
                break
            node = nxt
            sum_n = _sigma_q(b, node, children, visits, value_sum, raw_value, reward, prior, legal, discount, c_visit, c_scale, sq)
            _improved_policy(b, node, prior, legal, sq, pol)
            best = -np.inf
            a_sel = -1
            for a in range(num_actions):
                if not legal[b, a]:
                    continue
                s = pol[a] - _child_visits(children, visits, b, node, a) / (1.0 + sum_n)
                if s > best:
                    best = s
                    a_sel = a


@njit(cache=True, nogil=True)
def gumbel_root_result(
    children: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    raw_value: np.ndarray,
    reward: np.ndarray,
    prior: np.ndarray,
    legal: np.ndarray,
    root_score: np.ndarray,
    c_visit: float,
    c_scale: float,
    discount: float,
    rng_state: np.ndarray,
    out_policy: np.ndarray,
    out_action: np.ndarray,
) -> None:
    """Improved policy at the root ``out_policy [B, A]`` float64 and the action ``out_action
    [B]`` int64: among considered actions with the most visits (the survivors), the one
    with the highest ``g + log prior + sigma(q)``; exact ties are broken uniformly at random
    with the row's generator (an untrained model would otherwise always play action 0)."""
    num_actions = children.shape[2]
    sq = np.empty(num_actions)
    for b in range(children.shape[0]):
        _sigma_q(b, 0, children, visits, value_sum, raw_value, reward, prior, legal, discount, c_visit, c_scale, sq)
        most = -1
        for a in range(num_actions):
            if root_score[b, a] != -np.inf:
                most = max(most, _child_visits(children, visits, b, 0, a))
        best = -np.inf
        best_a = -1
        ties = 0
        for a in range(num_actions):
            if root_score[b, a] == -np.inf or _child_visits(children, visits, b, 0, a) != most:
                continue
            s = root_score[b, a] + sq[a]
            if s > best:
                best = s
                best_a = a
                ties = 1
            elif s == best:
                ties += 1
                if _uniform(rng_state, b) * ties < 1.0:
                    best_a = a
        out_action[b] = best_a
        _improved_policy(b, 0, prior, legal, sq, out_policy[b])
