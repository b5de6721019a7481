"""Outfit completion as the Polyvore literature measures it (Vasileva et al. 2018; Han et al. 2017), for any pair
score s(a, b) of two items ("b goes with a"):

- fill-in-the-blank (FITB): a candidate's score is its mean s(given, candidate) over the outfit's given items; the
  answer is the best-scored candidate; accuracy over questions.
- compatibility: an outfit's score is the mean s(a, b) over its ordered pairs of different items; AUC of real
  outfits against the negatives.

Pair scores here: MUFIN's on items it never saw (Module I's <x^1_a, z^1_b>; Module IV's with the label's free vector
at zero, `Ranker.unseen_pair_scores`), and the peers' (fine-category co-occurrence of the train outfits, TF-IDF
and frozen-encoder cosines, random). Intervals: bootstrap over questions (FITB) and over outfit lines (AUC), paired.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .bags import embed_rows
from .fusion import label_states
from .metrics import paired_bootstrap


# ---- the pairs a split needs ----------------------------------------------------------------------------------

@dataclass
class FitbPairs:
    a: np.ndarray  # given item rows
    b: np.ndarray  # candidate rows
    group: np.ndarray  # pair -> (question, candidate) slot
    starts: np.ndarray  # question -> its first slot (a question's slots are its candidates, in order)
    correct: np.ndarray  # question -> index of the right candidate


@dataclass
class CompatPairs:
    a: np.ndarray
    b: np.ndarray
    group: np.ndarray  # pair -> outfit line
    labels: np.ndarray  # outfit line -> 1 real | 0 negative


def fitb_pairs(questions, row: dict[str, int]) -> FitbPairs:
    a, b, g, starts, correct = [], [], [], [], []
    slot = 0
    for q in questions:
        starts.append(slot)
        correct.append(q.correct)
        for c in q.answers:
            for x in q.given:
                a.append(row[x])
                b.append(row[c])
                g.append(slot)
            slot += 1
    starts.append(slot)
    return FitbPairs(np.array(a, np.int64), np.array(b, np.int64), np.array(g, np.int64), np.array(starts, np.int64),
                     np.array(correct, np.int64))


def compat_pairs(lines, row: dict[str, int]) -> CompatPairs:
    a, b, g = [], [], []
    for k, (_, items) in enumerate(lines):
        rows = [row[i] for i in items]
        for i, x in enumerate(rows):
            for j, y in enumerate(rows):
                if i != j:
                    a.append(x)
                    b.append(y)
                    g.append(k)
    return CompatPairs(np.array(a, np.int64), np.array(b, np.int64), np.array(g, np.int64),
                       np.array([l for l, _ in lines], np.int64))


def _group_mean(s: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(group, weights=s, minlength=n) / np.maximum(np.bincount(group, minlength=n), 1)


def fitb_candidate_scores(s: np.ndarray, p: FitbPairs) -> list[np.ndarray]:
    """Per question, its candidates' scores (mean s over the given items)."""
    m = _group_mean(s, p.group, int(p.starts[-1]))
    return [m[p.starts[i]:p.starts[i + 1]] for i in range(len(p.correct))]


def fitb_right(s: np.ndarray, p: FitbPairs) -> np.ndarray:
    """Per question: 1 where the best-scored candidate (the first of equal ones) is the right one."""
    return np.array([int(np.argmax(c) == k) for c, k in zip(fitb_candidate_scores(s, p), p.correct)], np.float64)


def outfit_scores(s: np.ndarray, p: CompatPairs) -> np.ndarray:
    return _group_mean(s, p.group, len(p.labels))


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (ties count a half), by ranks: no classifier library in the loop of the bootstrap."""
    from scipy.stats import rankdata

    pos = labels == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ---- intervals ------------------------------------------------------------------------------------------------

def accuracy_interval(right: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    m = right[rng.integers(0, len(right), size=(n, len(right)))].mean(1)
    lo, hi = np.percentile(100 * m, [2.5, 97.5])
    return round(float(lo), 2), round(float(hi), 2)


def fitb_difference(right_a: np.ndarray, right_b: np.ndarray, n: int = 1000, seed: int = 0) -> dict:
    """Accuracy of a minus b, in points, with its 95% paired-bootstrap interval over questions."""
    ones = np.ones_like(right_a)
    return paired_bootstrap((right_a, ones), (right_b, ones), n, seed)


def _auc_resamples(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n resamples of the outfit lines, positives and negatives each drawn from their own (both classes kept)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    return np.hstack([pos[rng.integers(0, len(pos), size=(n, len(pos)))], neg[rng.integers(0, len(neg), size=(n, len(neg)))]])


def auc_interval(scores: np.ndarray, labels: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    vals = [auc(scores[i], labels[i]) for i in _auc_resamples(labels, n, seed)]
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)


def auc_difference(sa: np.ndarray, sb: np.ndarray, labels: np.ndarray, n: int = 1000, seed: int = 0) -> dict:
    """AUC of a minus b (x 100, as FITB's points) with its 95% paired-bootstrap interval (the same resampled outfit
    lines for both)."""
    d = np.array([auc(sa[i], labels[i]) - auc(sb[i], labels[i]) for i in _auc_resamples(labels, n, seed)])
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"diff": round(100 * (auc(sa, labels) - auc(sb, labels)), 4), "lo": round(100 * float(lo), 4),
            "hi": round(100 * float(hi), 4), "verdict": "win" if lo > 0 else "loss" if hi < 0 else "tie"}


# ---- pair scores of the peers ---------------------------------------------------------------------------------

def cosine(V, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of V[a] and V[b] (dense or sparse V)."""
    if sp.issparse(V):
        V = sp.csr_matrix(V, dtype=np.float64)
        n = np.sqrt(np.asarray(V.multiply(V).sum(1)).ravel())
        dots = np.asarray(V[a].multiply(V[b]).sum(1)).ravel()
    else:
        V = np.asarray(V, np.float64)
        n = np.linalg.norm(V, axis=1)
        dots = np.einsum("ij,ij->i", V[a], V[b])
    return dots / np.maximum(n[a] * n[b], 1e-12)


class CategoryCooccurrence:
    """How often two fine categories are worn together in the train outfits, as a pointwise mutual information
    with add-one counts: log((n_ab + 1) N / ((n_a + 1)(n_b + 1))), n over outfits (an item's category counts once)."""

    def __init__(self, train_outfits, category: dict[str, str]):
        cats = sorted({category[i] for _, its in train_outfits for i in its} | set(category.values()))
        self.index = {c: k for k, c in enumerate(cats)}
        K = len(cats)
        pair = np.zeros((K, K))
        single = np.zeros(K)
        for _, its in train_outfits:
            ks = sorted({self.index[category[i]] for i in its})
            single[ks] += 1
            for x in ks:
                for y in ks:
                    if x != y:
                        pair[x, y] += 1
        self.N = max(len(train_outfits), 1)
        self.pmi = np.log((pair + 1) * self.N / np.outer(single + 1, single + 1))

    def scores(self, cat_a: np.ndarray, cat_b: np.ndarray) -> np.ndarray:
        return self.pmi[cat_a, cat_b]


# ---- MUFIN on items it never saw ------------------------------------------------------------------------------

@dataclass
class ItemStates:
    """Per item: Module I's x^1 (unit) and Module IV's encoder outputs (x^1, X^1, mask), computed once."""
    x1: torch.Tensor
    r_x1: torch.Tensor
    r_X1: torch.Tensor
    r_mask: torch.Tensor


def item_states(module1, ranker, table, rows: np.ndarray, batch: int = 512) -> ItemStates:
    """Module I's x^1 of each item, and Module IV's encoder outputs as prediction keeps them for labels
    (`fusion.label_states`): an item never seen is a label like any other on its content side."""
    z, Z, m = label_states(ranker, table, rows, batch)
    return ItemStates(torch.from_numpy(embed_rows(module1, table, rows, batch)), z.float().cpu(), Z.float().cpu(), m.cpu())


@torch.no_grad()
def mufin_pair_scores(ranker, st: ItemStates, a: np.ndarray, b: np.ndarray, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(Module I's <x^1_a, z^1_b>, Module IV's unseen-label score of b for a), for item index pairs."""
    emb = (st.x1[a] * st.x1[b]).sum(-1).numpy()
    rnk = []
    for s in range(0, len(a), batch):
        i, j = torch.from_numpy(a[s:s + batch]), torch.from_numpy(b[s:s + batch])
        rnk.append(ranker.unseen_pair_scores(st.r_X1[i], st.r_mask[i], st.r_x1[i], st.r_X1[j], st.r_mask[j],
                                             st.r_x1[j]).float().numpy())
    return emb.astype(np.float64), (np.concatenate(rnk) if rnk else np.zeros(0)).astype(np.float64)


def choose_weights(measure, emb: np.ndarray, rnk: np.ndarray, extra: np.ndarray | None, alphas, weights) -> tuple[float, float, list]:
    """(alpha, w) maximising measure(alpha emb + (1 - alpha) rnk + w extra) on validation; ties go to the larger
    alpha (the simpler model, Module I alone at 1), then the smaller w. The curve: every (alpha, w, value)."""
    best, curve = None, []
    for al in sorted(alphas, reverse=True):
        for w in sorted(weights if extra is not None else [0.0]):
            s = al * emb + (1 - al) * rnk + (w * extra if extra is not None and w else 0.0)
            v = float(measure(s))
            curve.append({"alpha": round(float(al), 4), "w": float(w), "value": v})
            if best is None or v > best[2] + 1e-12:
                best = (float(al), float(w), v)
    return best[0], best[1], curve
