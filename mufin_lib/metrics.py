"""Extreme-classification metrics over scipy.sparse: P@k, nDCG@k, PSP@k, PSnDCG@k (k = 1, 3, 5) and R@k.

Conventions (spec §8): filter_labels pairs are removed from truth AND predictions first; every point
counts in the denominator, also one left with no positive; PSP / PSnDCG are normalised by the best
value achievable on the same points (as pyxclib and napkinXC). Propensities (Jain et al. 2016):
1/p_l = 1 + C (n_l + B)^-A, C = (ln N - 1)(B + 1)^A, from train label frequencies.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .layout import PROPENSITY_A, PROPENSITY_B

KS = (1, 3, 5)


def inv_propensity(Y_train: sp.spmatrix, A: float = PROPENSITY_A, B: float = PROPENSITY_B) -> np.ndarray:
    n = Y_train.shape[0]
    freq = np.asarray((Y_train > 0).sum(0)).ravel()
    C = (np.log(n) - 1) * (B + 1) ** A
    return 1.0 + C * (freq + B) ** (-A)


def _drop(M: sp.csr_matrix, filt: np.ndarray | None) -> sp.csr_matrix:
    M = sp.csr_matrix(M, copy=True)
    if filt is not None and len(filt):
        mask = sp.csr_matrix((np.ones(len(filt)), (filt[:, 0], filt[:, 1])), shape=M.shape)
        M = M - M.multiply(mask > 0)
        M.eliminate_zeros()
    return M


def filter_room(filt: np.ndarray) -> int:
    """The most filter pairs of one point: retrieving k + this many leaves k after filtering."""
    return int(np.bincount(filt[:, 0]).max()) if len(filt) else 0


def topk_from_scores(scores: sp.csr_matrix, k: int) -> np.ndarray:
    """Indices (n x k) of the k highest scores per row; -1 pads rows with fewer entries."""
    scores = sp.csr_matrix(scores)
    out = np.full((scores.shape[0], k), -1, np.int64)
    for i in range(scores.shape[0]):
        s, e = scores.indptr[i], scores.indptr[i + 1]
        if e > s:
            idx, val = scores.indices[s:e], scores.data[s:e]
            order = np.lexsort((idx, -val))[:k]  # ties broken by label index: deterministic
            out[i, : len(order)] = idx[order]
    return out


def topk_to_csr(indices: np.ndarray, scores: np.ndarray, n_labels: int) -> sp.csr_matrix:
    """Sparse score matrix from (n x k) retrieved indices and scores (-1 entries ignored). Scores are
    shifted to be positive so that a zero similarity survives as an entry."""
    n, k = indices.shape
    valid = indices >= 0
    rows = np.repeat(np.arange(n), k)[valid.ravel()]
    data = (scores[valid] - scores[valid].min() + 1.0) if valid.any() else np.zeros(0)
    return sp.csr_matrix((data, (rows, indices[valid])), shape=(n, n_labels))


def ranked_hits(scores: sp.csr_matrix, Y_true: sp.csr_matrix, inv_p: np.ndarray | None = None,
                filt: np.ndarray | None = None, kmax: int = 5) -> dict[str, np.ndarray]:
    """Per point and rank (n x kmax), after filtering: `hits` (1 where the ranked label is a positive), `ps_hits`
    (hits weighted by inverse propensity) and `best` (the largest weights achievable, the PSP normaliser); `top`,
    the ranked labels (-1: none); and `n_pos` per point. Every metric, and the paired bootstrap, is computed from these."""
    Y = _drop(sp.csr_matrix(Y_true) > 0, filt).astype(np.float32)
    S = _drop(scores, filt)
    top = topk_from_scores(S, kmax)
    n = Y.shape[0]
    hits = np.zeros((n, kmax), np.float32)
    rows = np.repeat(np.arange(n), kmax)
    valid = top.ravel() >= 0
    hits.ravel()[valid] = np.asarray(Y[rows[valid], top.ravel()[valid]]).ravel()
    out = {"hits": hits, "n_pos": Y.getnnz(1), "top": top}
    if inv_p is not None:
        wtop = np.zeros((n, kmax), np.float32)
        wtop.ravel()[valid] = inv_p[top.ravel()[valid]]
        out["ps_hits"] = hits * wtop
        # best achievable: each point's true labels sorted by inverse propensity
        best = np.zeros((n, kmax), np.float32)
        for i in range(n):
            w = np.sort(inv_p[Y.indices[Y.indptr[i]:Y.indptr[i + 1]]])[::-1][:kmax]
            best[i, : len(w)] = w
        out["best"] = best
    return out


def evaluate(scores: sp.csr_matrix, Y_true: sp.csr_matrix, inv_p: np.ndarray | None = None,
             filt: np.ndarray | None = None, ks=KS) -> dict[str, float]:
    """All metrics, in percent, for a sparse score matrix (higher = better) against binary truth."""
    kmax = max(ks)
    r = ranked_hits(scores, Y_true, inv_p, filt, kmax)
    hits, n_pos = r["hits"], r["n_pos"]
    n = hits.shape[0]
    disc = 1.0 / np.log2(np.arange(kmax) + 2)
    out: dict[str, float] = {}
    for k in ks:
        out[f"P@{k}"] = 100 * hits[:, :k].sum() / (n * k)
        idcg = np.array([disc[: min(k, m)].sum() for m in n_pos])
        dcg = (hits[:, :k] * disc[:k]).sum(1)
        out[f"nDCG@{k}"] = 100 * np.divide(dcg, idcg, out=np.zeros(n), where=idcg > 0).mean()
        if inv_p is not None:
            ps_hits, best = r["ps_hits"], r["best"]
            out[f"PSP@{k}"] = 100 * ps_hits[:, :k].sum() / max(best[:, :k].sum(), 1e-12)
            # per point divided by its (unweighted) ideal DCG, then normalised by the best (as pyxclib, napkinXC)
            inv_idcg = np.divide(1.0, idcg, out=np.zeros(n), where=idcg > 0)
            ps = ((ps_hits[:, :k] * disc[:k]).sum(1) * inv_idcg).sum()
            out[f"PSnDCG@{k}"] = 100 * ps / max(((best[:, :k] * disc[:k]).sum(1) * inv_idcg).sum(), 1e-12)
    return {k: round(float(v), 4) for k, v in out.items()}


def point_parts(scores: sp.csr_matrix, Y_true: sp.csr_matrix, inv_p: np.ndarray, filt: np.ndarray | None,
                metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) per point of a metric that is 100 * sum(num) / sum(den) over points: P@k (den 1)
    or PSP@k (den: the point's best achievable). A resample of points recomputes the metric exactly."""
    name, k = metric.split("@")
    k = int(k)
    r = ranked_hits(scores, Y_true, inv_p, filt, k)
    if name == "P":
        return r["hits"][:, :k].sum(1) / k, np.ones(len(r["hits"]))
    if name == "PSP":
        return r["ps_hits"][:, :k].sum(1), r["best"][:, :k].sum(1)
    raise ValueError(f"metric '{metric}': the bootstrap takes P@k or PSP@k")


def paired_bootstrap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], n_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Difference a - b of a metric (from `point_parts` of two systems on the same points), with a percentile
    interval from `n_resamples` resamples of the points (the same resample for both systems: paired)."""
    (na, da), (nb, db) = a, b
    n = len(na)
    diff = 100 * (na.sum() / max(da.sum(), 1e-12) - nb.sum() / max(db.sum(), 1e-12))
    rng = np.random.default_rng(seed)
    d = np.empty(n_resamples)
    for s in range(0, n_resamples, 100):  # in blocks: 100 x n indices at a time
        idx = rng.integers(0, n, size=(min(100, n_resamples - s), n))
        d[s:s + len(idx)] = 100 * (na[idx].sum(1) / np.maximum(da[idx].sum(1), 1e-12)
                                   - nb[idx].sum(1) / np.maximum(db[idx].sum(1), 1e-12))
    lo, hi = np.percentile(d, [50 * (1 - level), 100 - 50 * (1 - level)])
    return {"diff": round(float(diff), 4), "lo": round(float(lo), 4), "hi": round(float(hi), 4),
            "verdict": "win" if lo > 0 else "loss" if hi < 0 else "tie"}


def recall_at_k(labels: np.ndarray, Y_true, ks=(10, 50, 100, 200, 300), filt: np.ndarray | None = None,
                over: str = "all") -> dict[str, float]:
    """Shortlist recall R@k: the share of each point's positives among its first k labels (`labels`: n x K label
    ids, best first, -1 empty), filter pairs out of truth and labels first; averaged over all points, a point with
    no positive counting 0, as pyxclib and napkinXC do (`over="positive"`: over the points with a positive only)."""
    if over not in ("all", "positive"):
        raise ValueError(f"over '{over}': expected all or positive")
    Y = _drop(sp.csr_matrix(Y_true) > 0, filt)
    labels = np.asarray(labels, np.int64)
    n, L = Y.shape
    n_pos = Y.getnnz(1)
    # in one pass over (point, label) codes, not a Python loop per point (261K test points at the real data's shape)
    codes = np.arange(n, dtype=np.int64)[:, None] * L + np.maximum(labels, 0)
    keep = labels >= 0  # what takes a place among the first k: a real label, not a filtered pair
    if filt is not None and len(filt):
        keep &= ~np.isin(codes, np.asarray(filt, np.int64)[:, 0] * L + np.asarray(filt, np.int64)[:, 1])
    first = np.zeros(codes.shape, bool)  # a label listed twice counts once
    flat = np.flatnonzero(keep.ravel())
    first.ravel()[flat[np.unique(codes.ravel()[flat], return_index=True)[1]]] = True
    truth = np.repeat(np.arange(n, dtype=np.int64), n_pos) * L + Y.indices
    hit = first & np.isin(codes, truth)
    place = np.cumsum(keep, 1)  # 1-based place among the kept labels
    out = {}
    for k in ks:
        if k > labels.shape[1]:
            continue
        found = (hit & (place <= k)).sum(1) / np.maximum(n_pos, 1)
        pts = found if over == "all" else found[n_pos > 0]
        out[f"R@{k}"] = round(float(100 * pts.mean()) if len(pts) else 0.0, 4)
    return out


def equal_positive_bins(train_freq: np.ndarray, test_pos: np.ndarray, n_bins: int) -> np.ndarray:
    """Each label's bin, 0 = head: labels by training frequency, most frequent first (ties: label id), cut where the
    cumulative number of test positives crosses each 1/n_bins of the total, so that every bin holds the same number
    of test positives to within one label's."""
    order = np.lexsort((np.arange(len(train_freq)), -np.asarray(train_freq)))
    before = np.concatenate([[0], np.cumsum(np.asarray(test_pos)[order])[:-1]])
    total = max(int(np.sum(test_pos)), 1)
    out = np.empty(len(train_freq), np.int64)
    out[order] = np.minimum(n_bins - 1, (before * n_bins) // total)
    return out


def bin_contributions(scores: sp.csr_matrix, Y_true: sp.csr_matrix, inv_p: np.ndarray, filt: np.ndarray | None,
                      label_bin: np.ndarray, n_bins: int, k: int = 5) -> dict[str, np.ndarray]:
    """Each label bin's share of P@k and PSP@k (in points of the metric; the bins add up to the metric): the hits at
    ranks 1..k whose label lies in the bin, over the metric's denominator."""
    r = ranked_hits(scores, Y_true, inv_p, filt, k)
    top = r["top"][:, :k]
    b = np.where(top >= 0, label_bin[np.maximum(top, 0)], -1)
    n = len(top)
    p = np.array([100 * r["hits"][:, :k][b == i].sum() / (n * k) for i in range(n_bins)])
    psp = np.array([100 * r["ps_hits"][:, :k][b == i].sum() / max(r["best"][:, :k].sum(), 1e-12) for i in range(n_bins)])
    return {f"P@{k}": p, f"PSP@{k}": psp}
