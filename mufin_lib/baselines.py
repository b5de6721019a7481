"""The XC field's usual baselines, which stage 07 (stages/peers.py) runs beside MUFIN on the same split, filters
and metrics code: popularity; TF-IDF on titles + napkinXC PLT (one thread, so results repeat; exact search, its
default, and beam search); TF-IDF + PECOS XR-Linear (in its own Python when `libpecos` cannot live in the kit's
environment); label kNN and training-point votes with the frozen encoders (text, image, text + image).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .data.xc import XCDataset
from .encoders import Embeddings
from .fusion import PRIOR_GRID
from .layout import PROPENSITY_A, PROPENSITY_B
from .metrics import evaluate, filter_room, inv_propensity, topk_to_csr
from .retrieval import exact_search

MODALITIES = ("text", "image", "text+image")


def frozen_vectors(emb: Embeddings, uids: list[str], modality: str) -> np.ndarray:
    """One vector per product. text+image concatenates the unit title and unit mean-image vectors, so the
    inner product is the sum of the two cosines (a missing modality adds nothing)."""
    row = emb.row()
    idx = np.array([row[u] for u in uids])
    if modality == "text":
        return np.asarray(emb.text)[idx]
    if modality == "image":
        return emb.image_mean()[idx]
    if modality == "text+image":
        return np.hstack([np.asarray(emb.text)[idx], emb.image_mean()[idx]])
    raise ValueError(f"modality '{modality}': expected one of {MODALITIES}")


def label_knn_scores(emb: Embeddings, query_uids, label_uids, modality: str, k: int, index=None) -> sp.csr_matrix:
    """The k nearest labels by the frozen encoders: exact search, or `index` (a VectorIndex over the labels' vectors)."""
    Q = frozen_vectors(emb, query_uids, modality)
    S, I = index.search(Q, k) if index is not None else exact_search(Q, frozen_vectors(emb, label_uids, modality), k)
    return topk_to_csr(I, S, len(label_uids))


def frozen_nn(ds: XCDataset, emb: Embeddings, split: str = "test", modality: str = "text+image",
              k: int = 5, A: float = PROPENSITY_A, B: float = PROPENSITY_B) -> dict:
    """Metrics of the nearest labels by the frozen encoders (stage 01's check: the floor a trained model must beat)."""
    scores = label_knn_scores(emb, ds.uids[split], ds.uids["label"], modality, k + filter_room(ds.filters[split]))
    m = evaluate(scores, ds.Y[split], inv_propensity(ds.Y["train"], A, B), ds.filters[split])
    return {"modality": modality, "split": split, **m}


def frozen_table(ds: XCDataset, emb: Embeddings, split: str = "test", modalities=MODALITIES,
                 A: float = PROPENSITY_A, B: float = PROPENSITY_B):
    """frozen_nn for each modality, one row each (a pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([frozen_nn(ds, emb, split, m, A=A, B=B) for m in modalities])


def vote_scores(Q: np.ndarray, K: np.ndarray, Y_fit: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Training-point votes: label l scores the sum of the (positive) similarities of the `neighbours` nearest
    training points (keys K) that have l."""
    S, I = exact_search(Q, K, neighbours)
    return votes_of_neighbours(S, I, Y_fit, neighbours)


def votes_of_neighbours(S: np.ndarray, I: np.ndarray, Y_fit: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """vote_scores from an exact search already made (S, I: n x at least `neighbours`, best first)."""
    S, I = S[:, :neighbours], I[:, :neighbours]
    W = sp.csr_matrix((np.maximum(S, 0).ravel() + 1e-6, I.ravel(), np.arange(0, S.size + 1, S.shape[1])),
                      shape=(len(S), Y_fit.shape[0]))
    return (W @ Y_fit).tocsr()


def with_popularity(S: sp.csr_matrix, popularity: np.ndarray, weight: float) -> sp.csr_matrix:
    """A peer's scores over its candidates, each row divided by its largest (the ranking kept, the scale the same
    for every point), plus `weight` x the label's log-popularity (fusion.log_popularity): the term stage 06 adds to
    MUFIN, given to a peer with the same kind of tuning."""
    S = sp.csr_matrix(S, dtype=np.float64, copy=True)
    top = S.max(axis=1).toarray().ravel()
    S = sp.diags(np.divide(1.0, top, out=np.zeros_like(top), where=top > 0)) @ S
    S = sp.csr_matrix(S)
    S.data = S.data + weight * popularity[S.indices] + 1e-9
    return S


def tune_popularity(S_val: sp.csr_matrix, popularity: np.ndarray, Y, filt, metric: str = "P@1", inv_p=None,
                    grid=PRIOR_GRID) -> tuple[float, float]:
    """(weight, validation metric) of the log-popularity weight of `grid` with the best validation `metric` for a
    peer's validation scores (ties: the smaller weight)."""
    best = None
    for g in grid:
        m = evaluate(with_popularity(S_val, popularity, g), Y, inv_p if metric.startswith("PS") else None, filt)[metric]
        if best is None or m > best[1]:
            best = (float(g), float(m))
    return best


def popularity_scores(Y_fit: sp.csr_matrix, n_points: int, k: int) -> sp.csr_matrix:
    freq = np.asarray(Y_fit.sum(0)).ravel()
    top = np.argsort(-freq, kind="stable")[:k]
    return topk_to_csr(np.tile(top, (n_points, 1)), np.tile(freq[top], (n_points, 1)), Y_fit.shape[1])


def tfidf(train_texts: list[str], test_texts: list[str], ngrams: int = 2):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, ngrams), sublinear_tf=True, dtype=np.float32)
    return vec.fit_transform(train_texts).tocsr(), vec.transform(test_texts).tocsr()


def _labels_lists(Y: sp.csr_matrix) -> list[list[int]]:
    Y = sp.csr_matrix(Y)
    return [Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist() for i in range(Y.shape[0])]


PLT_C = 10.0  # napkinXC's liblinear_c default


def plt_scores(Xtr, Y_fit, Xte, k: int, search: str = "exact", beam: int = 10, seed: int = 0, c: float = PLT_C,
               also=None, threads: int = 1) -> tuple:
    """napkinXC PLT (one thread by default: results repeat). Returns (scores, train seconds, predict seconds); with `also` (more
    points' features), also their scores from the same model: (scores, train s, predict s, also's scores)."""
    from napkinxc.models import PLT

    d = tempfile.mkdtemp(prefix="mufin-plt-")
    try:
        m = PLT(d, threads=threads, seed=seed, tree_search_type=search, beam_search_width=beam, liblinear_c=c)
        t = time.perf_counter()
        m.fit(Xtr, _labels_lists(Y_fit))
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = m.predict_proba(Xte, top_k=k)
        pred_s = time.perf_counter() - t
        more = m.predict_proba(also, top_k=k) if also is not None else None
    finally:
        shutil.rmtree(d, ignore_errors=True)
    out = (_pred_csr(pred, Xte.shape[0], Y_fit.shape[1]), train_s, pred_s)
    return out if also is None else (*out, _pred_csr(more, also.shape[0], Y_fit.shape[1]))


def _pred_csr(pred, n: int, n_labels: int) -> sp.csr_matrix:
    rows = [i for i, p in enumerate(pred) for _ in p]
    cols = [int(lab) for p in pred for lab, _ in p]
    vals = [float(pr) + 1e-6 for p in pred for _, pr in p]
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n_labels))


def pecos_python(configured: str = "") -> str | None:
    """A Python that can import pecos: `configured`, else $MUFIN_PECOS_PYTHON, else this one; None if none can."""
    for py in (configured, os.environ.get("MUFIN_PECOS_PYTHON", ""), sys.executable):
        if py and (shutil.which(py) or Path(py).exists()):
            ok = subprocess.run([py, "-c", "import pecos.xmc.xlinear"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


def pecos_scores(Xtr, Y_fit, Xte, k: int, python: str, threads: int = -1) -> tuple[sp.csr_matrix, float, float]:
    """PECOS XR-Linear with its defaults, run by `python` (its own environment: libpecos needs numpy < 2); `threads`:
    prediction's (-1: all). Returns (top-k scores, train seconds, predict seconds)."""
    d = Path(tempfile.mkdtemp(prefix="mufin-pecos-"))
    try:
        sp.save_npz(d / "Xtr.npz", sp.csr_matrix(Xtr, dtype=np.float32))
        sp.save_npz(d / "Ytr.npz", sp.csr_matrix(Y_fit, dtype=np.float32))
        sp.save_npz(d / "Xte.npz", sp.csr_matrix(Xte, dtype=np.float32))
        script = Path(__file__).with_name("pecos_runner.py")
        res = subprocess.run([python, str(script), str(d), str(k), str(threads)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"PECOS ({python}) failed: {res.stderr.strip()[-500:]}")
        times = json.loads((d / "times.json").read_text())
        P = sp.load_npz(d / "P.npz").tocsr()
        P.data = P.data + 1e-6
        return P, times["train_s"], times["predict_s"]
    finally:
        shutil.rmtree(d, ignore_errors=True)
