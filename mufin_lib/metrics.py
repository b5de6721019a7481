"""Extreme-classification metrics over scipy.sparse: P@k, nDCG@k, PSP@k, PSnDCG@k (k = 1, 3, 5) and R@k.

Conventions (spec §8): filter_labels pairs are removed from truth AND predictions first; every point
counts in the denominator, also one left with no positive; PSP / PSnDCG are normalised by the best
value achievable on the same points (as pyxclib and napkinXC). Propensities (Jain et al. 2016):
1/p_l = 1 + C (n_l + B)^-A, C = (ln N - 1)(B + 1)^A, from train label frequencies.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

KS = (1, 3, 5)


def inv_propensity(Y_train: sp.spmatrix, A: float = 0.6, B: float = 2.6) -> np.ndarray:
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


def evaluate(scores: sp.csr_matrix, Y_true: sp.csr_matrix, inv_p: np.ndarray | None = None,
             filt: np.ndarray | None = None, ks=KS) -> dict[str, float]:
    """All metrics, in percent, for a sparse score matrix (higher = better) against binary truth."""
    Y = _drop(sp.csr_matrix(Y_true) > 0, filt).astype(np.float32)
    S = _drop(scores, filt)
    kmax = max(ks)
    top = topk_from_scores(S, kmax)
    n = Y.shape[0]
    hits = np.zeros((n, kmax), np.float32)
    rows = np.repeat(np.arange(n), kmax)
    valid = top.ravel() >= 0
    hits.ravel()[valid] = np.asarray(Y[rows[valid], top.ravel()[valid]]).ravel()
    disc = 1.0 / np.log2(np.arange(kmax) + 2)
    n_pos = Y.getnnz(1)
    out: dict[str, float] = {}
    if inv_p is not None:
        wtop = np.zeros((n, kmax), np.float32)
        wtop.ravel()[valid] = inv_p[top.ravel()[valid]]
        ps_hits = hits * wtop
        # best achievable: each point's true labels sorted by inverse propensity
        best = np.zeros((n, kmax), np.float32)
        for i in range(n):
            w = np.sort(inv_p[Y.indices[Y.indptr[i]:Y.indptr[i + 1]]])[::-1][:kmax]
            best[i, : len(w)] = w
    for k in ks:
        out[f"P@{k}"] = 100 * hits[:, :k].sum() / (n * k)
        idcg = np.array([disc[: min(k, m)].sum() for m in n_pos])
        dcg = (hits[:, :k] * disc[:k]).sum(1)
        out[f"nDCG@{k}"] = 100 * np.divide(dcg, idcg, out=np.zeros(n), where=idcg > 0).mean()
        if inv_p is not None:
            out[f"PSP@{k}"] = 100 * ps_hits[:, :k].sum() / max(best[:, :k].sum(), 1e-12)
            # per point divided by its (unweighted) ideal DCG, then normalised by the best (as pyxclib, napkinXC)
            inv_idcg = np.divide(1.0, idcg, out=np.zeros(n), where=idcg > 0)
            ps = ((ps_hits[:, :k] * disc[:k]).sum(1) * inv_idcg).sum()
            out[f"PSnDCG@{k}"] = 100 * ps / max(((best[:, :k] * disc[:k]).sum(1) * inv_idcg).sum(), 1e-12)
    return {k: round(float(v), 4) for k, v in out.items()}


def recall_at_k(scores: sp.csr_matrix, Y_true: sp.csr_matrix, ks=(10, 50, 100, 200, 300),
                filt: np.ndarray | None = None) -> dict[str, float]:
    """Shortlist recall R@k: the share of each point's positives found in its top k, averaged over points
    with a positive."""
    Y = _drop(sp.csr_matrix(Y_true) > 0, filt)
    S = _drop(scores, filt)
    top = topk_from_scores(S, max(ks))
    n_pos = Y.getnnz(1)
    out = {}
    for k in ks:
        found = np.zeros(Y.shape[0])
        for i in range(Y.shape[0]):
            t = top[i, :k]
            t = t[t >= 0]
            if len(t):
                found[i] = np.asarray(Y[i, t].sum()).item()
        has = n_pos > 0
        out[f"R@{k}"] = round(float(100 * (found[has] / n_pos[has]).mean()) if has.any() else 0.0, 4)
    return out
