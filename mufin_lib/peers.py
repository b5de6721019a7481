"""The XC field's usual baselines, run beside MUFIN on the same split, filters and metrics code (stage 07).

Peers: popularity; TF-IDF on titles + napkinXC PLT (one thread, so results repeat; exact search, its default, and
beam search); TF-IDF + PECOS XR-Linear (in its own Python when `libpecos` cannot live in the kit's environment);
label kNN and train-point kNN votes with the frozen encoders (text, image, text + image). MUFIN's own rows come from
the finished run. Every peer trains on the points Module I and IV trained on (train minus validation), so all
rows see the same data. Each row's difference to MUFIN at P@1 and PSP@5 has a paired-bootstrap interval.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .config import ranged
from .data.xc import XCDataset
from .encoders import Embeddings
from .metrics import evaluate, inv_propensity, paired_bootstrap, point_parts, topk_to_csr
from .retrieval import exact_search

MODALITIES = ("text", "image", "text+image")
PEERS = ("popularity", "tfidf-plt", "tfidf-plt-beam", "tfidf-pecos", "label-knn", "train-knn")
BOOTSTRAP_METRICS = ("P@1", "PSP@5")
TABLE_METRICS = ("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5")


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


def _room(filt: np.ndarray) -> int:
    """The most filter pairs of one point: retrieving k + this many leaves k after filtering."""
    return int(np.bincount(filt[:, 0]).max()) if len(filt) else 0


def label_knn_scores(emb: Embeddings, query_uids, label_uids, modality: str, k: int) -> sp.csr_matrix:
    Q, X = frozen_vectors(emb, query_uids, modality), frozen_vectors(emb, label_uids, modality)
    S, I = exact_search(Q, X, k)
    return topk_to_csr(I, S, len(label_uids))


def frozen_nn(ds: XCDataset, emb: Embeddings, split: str = "test", modality: str = "text+image",
              k: int = 5, A: float = 0.6, B: float = 2.6) -> dict:
    """Metrics of the nearest labels by the frozen encoders (stage 01's check: the floor a trained model must beat)."""
    scores = label_knn_scores(emb, ds.uids[split], ds.uids["label"], modality, k + _room(ds.filters[split]))
    m = evaluate(scores, ds.Y[split], inv_propensity(ds.Y["train"], A, B), ds.filters[split])
    return {"modality": modality, "split": split, **m}


def frozen_table(ds: XCDataset, emb: Embeddings, split: str = "test", modalities=MODALITIES):
    """frozen_nn for each modality, one row each (a pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([frozen_nn(ds, emb, split, m) for m in modalities])


def train_knn_scores(Q: np.ndarray, K: np.ndarray, Y_fit: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Votes of the `neighbours` nearest training points: label l scores the sum of the (positive) similarities
    of the neighbours that have l."""
    S, I = exact_search(Q, K, neighbours)
    W = sp.csr_matrix((np.maximum(S, 0).ravel() + 1e-6, I.ravel(), np.arange(0, S.size + 1, S.shape[1])),
                      shape=(len(Q), K.shape[0]))
    return (W @ Y_fit).tocsr()


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


def plt_scores(Xtr, Y_fit, Xte, k: int, search: str = "exact", beam: int = 10, seed: int = 0) -> tuple[sp.csr_matrix, float, float]:
    """napkinXC PLT (one thread: results repeat). Returns (scores, train seconds, predict seconds)."""
    from napkinxc.models import PLT

    d = tempfile.mkdtemp(prefix="mufin-plt-")
    try:
        m = PLT(d, threads=1, seed=seed, tree_search_type=search, beam_search_width=beam)
        t = time.perf_counter()
        m.fit(Xtr, _labels_lists(Y_fit))
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = m.predict_proba(Xte, top_k=k)
        pred_s = time.perf_counter() - t
    finally:
        shutil.rmtree(d, ignore_errors=True)
    rows = [i for i, p in enumerate(pred) for _ in p]
    cols = [int(lab) for p in pred for lab, _ in p]
    vals = [float(pr) + 1e-6 for p in pred for _, pr in p]
    return sp.csr_matrix((vals, (rows, cols)), shape=(Xte.shape[0], Y_fit.shape[1])), train_s, pred_s


def pecos_python(configured: str = "") -> str | None:
    """A Python that can import pecos: `configured`, else $MUFIN_PECOS_PYTHON, else this one; None if none can."""
    for py in (configured, os.environ.get("MUFIN_PECOS_PYTHON", ""), sys.executable):
        if py and (shutil.which(py) or Path(py).exists()):
            ok = subprocess.run([py, "-c", "import pecos.xmc.xlinear"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


def pecos_scores(Xtr, Y_fit, Xte, k: int, python: str) -> tuple[sp.csr_matrix, float, float]:
    """PECOS XR-Linear with its defaults, run by `python` (its own environment: libpecos needs numpy < 2)."""
    d = Path(tempfile.mkdtemp(prefix="mufin-pecos-"))
    try:
        sp.save_npz(d / "Xtr.npz", sp.csr_matrix(Xtr, dtype=np.float32))
        sp.save_npz(d / "Ytr.npz", sp.csr_matrix(Y_fit, dtype=np.float32))
        sp.save_npz(d / "Xte.npz", sp.csr_matrix(Xte, dtype=np.float32))
        script = Path(__file__).with_name("pecos_runner.py")
        res = subprocess.run([python, str(script), str(d), str(k)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"PECOS ({python}) failed: {res.stderr.strip()[-500:]}")
        times = json.loads((d / "times.json").read_text())
        P = sp.load_npz(d / "P.npz").tocsr()
        P.data = P.data + 1e-6
        return P, times["train_s"], times["predict_s"]
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class PeersParams:
    """Stage 07's parameters (notebook 07's parameters cell equals these defaults)."""
    peers: str = "popularity,tfidf-plt,tfidf-plt-beam,tfidf-pecos,label-knn,train-knn"  # which peers run
    knn_neighbours: int = ranged(20, 1)  # train-point kNN: votes of this many nearest training points
    plt_beam_width: int = ranged(10, 1)  # tfidf-plt-beam: napkinXC's beam search width
    tfidf_ngrams: int = ranged(2, 1)  # word n-grams up to this length
    pecos_python: str = ""  # a Python with libpecos ("": $MUFIN_PECOS_PYTHON, else this one; else "not installed")
    bootstrap: int = ranged(1000, 10)  # paired-bootstrap resamples of the test points
    propensity_A: float = ranged(0.6, 0, lo_open=True)
    propensity_B: float = ranged(2.6, 0)
    seed: int = 0


@dataclass
class Row:
    method: str
    family: str  # MUFIN | peer
    scores: sp.csr_matrix | None  # test scores; None when the peer could not run (note says why)
    train_s: float | None = None
    predict_ms: float | None = None  # per test point
    predict_from: str = ""  # what prediction time includes
    note: str = ""


def mufin_rows(run, k: int) -> list[Row]:
    """Module I (and the twins stage 02 trained), MUFIN-(alpha=1), Module IV alone and MUFIN, from the run."""
    from .fusion import label_alphas, mufin_variants, score_split, split_terms
    from .module1 import load_model, module1_scores, variant_dir, variants

    ds, p1 = run.dataset, run.module1_params
    m1, m4, ev = run.metrics("module1"), run.metrics("module4"), run.metrics("evaluate")
    t4 = sum(h.get("seconds", 0.0) for h in m4["history"]) or m4.get("s_per_epoch", 0.0) * len(m4["history"])
    t1 = m1["timing"]
    tm = ev["timing_ms_per_point"]
    emb = run.embeddings
    rows = []
    for i, (name, p) in enumerate(variants(p1).items()):
        model = run.module1 if i == 0 else load_model(variant_dir(run.stage("module1"), name, p1), ds)
        scores, _, _ = module1_scores(model, ds, emb, "test", p, k)
        rows.append(Row(f"Module I ({name})", "MUFIN", scores, t1.get(name, {}).get("total_s"),
                        predict_from="cached encoder features", note="" if i == 0 else "twin of the run's Module I"))
    e, r, sl = score_split(run, "test")
    main_t1 = next(iter(t1.values()))["total_s"]
    total_ms = round(tm["encode_ms"] + tm["retrieve_ms"] + tm["rank_ms"], 3) if tm else None
    rec = run.alpha_record
    terms = rec.get("terms")
    v, p = split_terms(run, "test", sl, terms["vote_neighbours"]) if terms else (None, None)
    for name, scores in mufin_variants(rec, label_alphas(run) if rec.get("by_frequency") else None, e, r, sl,
                                       ds.num_labels, v, p):
        rows.append(Row(name, "MUFIN", scores, round(main_t1 + t4, 1), total_ms,
                        "raw title and images (encoders, retrieval, ranker)"))
    return rows


def peer_rows(run, params: PeersParams, k: int, progress: bool = True) -> list[Row]:
    from .progress import tqdm

    ds, emb = run.dataset, run.embeddings
    fit, _ = run.carve
    Y_fit = sp.csr_matrix(ds.Y["train"][fit])
    fit_uids = [ds.uids["train"][i] for i in fit]
    test = run.split("test")
    n = len(test.uids)
    wanted = [p.strip() for p in params.peers.split(",") if p.strip()]
    bad = [p for p in wanted if p not in PEERS]
    if bad:
        raise ValueError(f"peers: {', '.join(bad)} unknown; expected some of {', '.join(PEERS)}")
    has_images = run.module1_params.image_encoder != "" and np.asarray(emb.image_mean()).size > 0
    mods = list(MODALITIES) if has_images else ["text"]
    rows: list[Row] = []
    tf = None
    for peer in tqdm(wanted, desc="peers", disable=not progress):
        t = time.perf_counter()
        if peer == "popularity":
            s = popularity_scores(Y_fit, n, k)
            rows.append(Row("popularity", "peer", s, round(time.perf_counter() - t, 2), 0.0, "a constant list"))
        elif peer.startswith("tfidf"):
            if tf is None:
                t0 = time.perf_counter()
                tf = (*tfidf([ds.titles["train"][i] for i in fit], ds.titles["test"], params.tfidf_ngrams),
                      time.perf_counter() - t0)
            Xtr, Xte, tf_s = tf
            if peer == "tfidf-pecos":
                py = pecos_python(params.pecos_python)
                if py is None:
                    rows.append(Row("TF-IDF + PECOS XR-Linear", "peer", None,
                                    note="not installed (pip install libpecos in an environment with numpy<2, "
                                         "then pecos_python= or MUFIN_PECOS_PYTHON= its python)"))
                    continue
                s, tr, pr = pecos_scores(Xtr, Y_fit, Xte, k, py)
                rows.append(Row("TF-IDF + PECOS XR-Linear", "peer", s, round(tf_s + tr, 2), round(1000 * pr / n, 3),
                                "title TF-IDF features", note=f"run by {py}"))
            else:
                beam = peer.endswith("beam")
                s, tr, pr = plt_scores(Xtr, Y_fit, Xte, k, "beam" if beam else "exact", params.plt_beam_width, params.seed)
                rows.append(Row(f"TF-IDF + napkinXC PLT ({f'beam {params.plt_beam_width}' if beam else 'exact search'})",
                                "peer", s, round(tf_s + tr, 2), round(1000 * pr / n, 3), "title TF-IDF features",
                                note="1 thread"))
        elif peer == "label-knn":
            for m in mods:
                t = time.perf_counter()
                s = label_knn_scores(emb, test.uids, ds.uids["label"], m, k)
                rows.append(Row(f"label kNN, frozen ({m})", "peer", s, 0.0, round(1000 * (time.perf_counter() - t) / n, 3),
                                "cached encoder features"))
        elif peer == "train-knn":
            for m in mods:
                t = time.perf_counter()
                K = frozen_vectors(emb, fit_uids, m)
                build = time.perf_counter() - t
                t = time.perf_counter()
                s = train_knn_scores(frozen_vectors(emb, test.uids, m), K, Y_fit, params.knn_neighbours)
                rows.append(Row(f"train-point kNN ({params.knn_neighbours}), frozen ({m})", "peer", s, round(build, 2),
                                round(1000 * (time.perf_counter() - t) / n, 3), "cached encoder features"))
    return rows


@dataclass
class PeersResult:
    table: "object"  # pandas DataFrame: one row per method, metrics, intervals against MUFIN, times
    summary: dict  # what metrics.json reports
    twins: "object"  # pandas DataFrame: the run's Module I against its modality twins, with intervals


def peers_stage(run, params: PeersParams, progress: bool = True) -> PeersResult:
    """Stage 07 on a finished run (stages 01-06): MUFIN's rows and the peers' on test, with paired-bootstrap
    intervals of each row's difference to MUFIN at P@1 and PSP@5."""
    import pandas as pd

    test = run.split("test")
    k = 5 + _room(test.filter)
    inv_p = run.inv_propensity(params.propensity_A, params.propensity_B)  # as stage 06
    rows = mufin_rows(run, k) + peer_rows(run, params, k, progress)
    ref = run.metrics("evaluate").get("mufin")  # the MUFIN the run predicts with (stage 06)
    ref = next(r for r in rows if r.method == ref) if ref else [r for r in rows if r.method.startswith("MUFIN (alpha")][-1]
    ref_parts = {m: point_parts(ref.scores, test.Y, inv_p, test.filter, m) for m in BOOTSTRAP_METRICS}
    out = []
    for r in rows:
        rec = {"data": run.data_name, "method": r.method, "family": r.family}
        if r.scores is not None:
            m = evaluate(r.scores, test.Y, inv_p, test.filter)
            rec.update({c: m[c] for c in TABLE_METRICS})
            for m in BOOTSTRAP_METRICS:
                if r is not ref:
                    b = paired_bootstrap(point_parts(r.scores, test.Y, inv_p, test.filter, m), ref_parts[m],
                                         params.bootstrap, params.seed)
                    rec.update({f"{m} - MUFIN": b["diff"], f"{m} 95% lo": b["lo"], f"{m} 95% hi": b["hi"],
                                f"{m} vs MUFIN": b["verdict"]})
        rec.update({"train_s": r.train_s, "predict_ms": r.predict_ms, "predict_from": r.predict_from, "note": r.note})
        out.append(rec)
    table = pd.DataFrame(out)
    twins = _twins_vs_main(rows, test, inv_p, params)
    summary = {"data": run.data_title, "synthetic": run.synthetic, "test_points": len(test.uids),
               "bootstrap_resamples": params.bootstrap, "reference": ref.method,
               "propensity": {"A": params.propensity_A, "B": params.propensity_B},
               "module1_twins_vs_main": twins.to_dict("records"),
               "results": table.astype(object).where(table.notna(), None).to_dict("records")}
    return PeersResult(table, summary, twins)


def _twins_vs_main(rows: list[Row], test, inv_p, params: PeersParams):
    """Module I's modality twins (stage 02's compare_modalities) against the run's Module I, paired bootstrap: does
    the photo (or the title) help?"""
    import pandas as pd

    m1 = [r for r in rows if r.method.startswith("Module I (")]
    out = []
    for twin in m1[1:]:
        rec = {"comparison": f"{m1[0].method} - {twin.method}"}
        for m in BOOTSTRAP_METRICS:
            b = paired_bootstrap(point_parts(m1[0].scores, test.Y, inv_p, test.filter, m),
                                 point_parts(twin.scores, test.Y, inv_p, test.filter, m), params.bootstrap, params.seed)
            rec.update({f"{m} diff": b["diff"], f"{m} 95% lo": b["lo"], f"{m} 95% hi": b["hi"], f"{m}": b["verdict"]})
        out.append(rec)
    return pd.DataFrame(out)
