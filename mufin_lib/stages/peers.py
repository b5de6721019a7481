"""Stage 07, peers: MUFIN beside the XC field's usual baselines (mufin_lib.baselines) on the same split, filters,
metrics code and training points (the fit points: train minus validation), with paired-bootstrap intervals of each
row's difference to MUFIN at P@1 and PSP@5."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..baselines import (MODALITIES, PLT_C, frozen_vectors, label_knn_scores, pecos_python, pecos_scores, plt_scores,
                         popularity_scores, tfidf, tune_popularity, votes_of_neighbours, with_popularity)
from ..fusion import PRIOR_GRID
from ..retrieval import vote_index
from ..bags import bag_source
from ..config import ranged
from ..layout import METRICS, TEST_SCORES
from ..metrics import evaluate, filter_room, paired_bootstrap, point_parts
from ..module1 import load_model, module1_scores
from ..progress import tqdm
from ..report import load_scores, save_scores, write_metrics, write_table
from .evaluate import score_split, split_terms
from .module1 import load_params, variant_dir, variants
from ..fusion import mufin_variants

PEERS = ("popularity", "tfidf-plt", "tfidf-plt-beam", "tfidf-pecos", "label-knn", "votes")
BOOTSTRAP_METRICS = ("P@1", "PSP@5")
PLT_C_GRID = (1.0, 10.0, 100.0)  # liblinear C (napkinXC's default 10 first)
PLT_BEAM_GRID = (5, 10, 30)
VOTES_GRID = (5, 10, 20, 50, 100)
TABLE_METRICS = ("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5")


@dataclass
class PeersParams:
    """Stage 07's parameters (notebook 07's parameters cell equals these defaults)."""
    peers: str = "popularity,tfidf-plt,tfidf-plt-beam,tfidf-pecos,label-knn,votes"  # which peers run
    vote_neighbours: int = ranged(20, 1)  # votes: this many nearest training points (frozen encoders) vote
    plt_beam_width: int = ranged(10, 1)  # tfidf-plt-beam: napkinXC's beam search width
    plt_threads: int = ranged(1, 1)  # napkinXC's threads: 1 repeats exactly; more train a large label set faster
    # the same kind of budget as MUFIN's fusion: each tunable peer also as a row tuned on the val-alpha half by stage
    # 06's metric (PLT's liblinear C over PLT_C_GRID, the beam's width over PLT_BEAM_GRID, the votes' neighbours over
    # VOTES_GRID, each with a log-popularity weight over PRIOR_GRID); the untuned rows stay
    tune: bool = True
    tune_candidates: int = ranged(100, 1)  # a tuned peer's labels per point that the popularity term may reorder
    tfidf_ngrams: int = ranged(2, 1)  # word n-grams up to this length
    pecos_python: str = ""  # a Python with libpecos ("": $MUFIN_PECOS_PYTHON, else this one; else "not installed")
    bootstrap: int = ranged(1000, 10)  # paired-bootstrap resamples of the test points
    seed: int = ranged(0, 0)  # numpy and torch seeds: 0 or more


@dataclass
class Row:
    method: str
    family: str  # MUFIN | peer
    scores: sp.csr_matrix | None  # test scores; None when the peer could not run (note says why)
    train_s: float | None = None
    predict_ms: float | None = None  # per test point
    predict_from: str = ""  # what prediction time includes
    note: str = ""
    tuned: bool = False  # tuned on validation (the note says what was chosen)
    tuned_setting: dict | None = None


def mufin_rows(run, k: int) -> list[Row]:
    """Module I (and the twins stage 02 trained), MUFIN-(alpha=1), Module IV alone and MUFIN, from the run."""
    ds, p1 = run.dataset, load_params(run)
    m1, m4, ev = run.metrics("module1"), run.metrics("module4"), run.metrics("evaluate")
    t4 = sum(h.get("seconds", 0.0) for h in m4["history"]) or m4.get("s_per_epoch", 0.0) * len(m4["history"])
    t1 = m1["timing"]
    tm = ev["timing_ms_per_point"]
    emb = run.embeddings
    test = run.split("test")
    rows = []
    for i, (name, p) in enumerate(variants(p1).items()):
        model = run.module1 if i == 0 else load_model(variant_dir(run.stage("module1"), name, p1), ds)
        scores = module1_scores(model, bag_source(model, ds, emb, p), test.uids, ds.uids["label"], k + filter_room(test.filter))
        rows.append(Row(f"Module I ({name})", "MUFIN", scores, t1.get(name, {}).get("total_s"),
                        predict_from="cached encoder features", note="" if i == 0 else "twin of the run's Module I"))
    e, r, sl = score_split(run, "test")
    main_t1 = next(iter(t1.values()))["total_s"]
    total_ms = round(tm["encode_ms"] + tm["retrieve_ms"] + tm["rank_ms"], 3) if tm else None
    rec = run.alpha_record
    terms = rec.get("terms")
    v, p = split_terms(run, "test", sl, terms["vote_neighbours"]) if terms else (None, None)
    for name, scores in mufin_variants(rec, run.fusion.label_alpha(run.fit_labels) if rec.get("by_frequency") else None, e, r, sl,
                                       ds.num_labels, v, p, run.modules_name):
        rows.append(Row(name, "MUFIN", scores, round(main_t1 + t4, 1), total_ms,
                        "raw title and images (encoders, retrieval, ranker)"))
    return rows


class Tuning(NamedTuple):
    """What a peer is tuned on: the val-alpha half (stage 06 tunes MUFIN's fusion there), by stage 06's metric."""
    split: object  # Split
    metric: str
    inv_p: object  # fit points' inverse propensities (PSP metrics)
    popularity: object  # log-popularity over the fit points (run.popularity, the term stage 06 gives MUFIN)


def _tuned_row(method: str, candidates: list, tune: Tuning, predict_from: str, note: str = "") -> Row:
    """The tuned row of a peer from its candidate settings [(setting, val scores, test scores, train s, predict ms)]
    (the defaults first, so that a tie keeps them): each with its log-popularity weight tuned on validation, the best
    validation metric wins; train_s counts every candidate (the tuning budget)."""
    best = None
    for setting, S_val, S_test, _, ms in candidates:
        g, m = tune_popularity(S_val, tune.popularity, tune.split.Y, tune.split.filter, tune.metric, tune.inv_p)
        if best is None or m > best[0]:
            best = (m, setting, g, S_test, ms)
    m, setting, g, S_test, ms = best
    chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())
    return Row(method, "peer", with_popularity(S_test, tune.popularity, g),
               round(sum(c[3] for c in candidates), 2), ms, predict_from,
               note=(note + "; " if note else "") + f"tuned on val-alpha ({tune.metric} {m:.2f}): {chosen}, "
                    f"popularity weight {g:g}; {len(candidates)} settings x {len(PRIOR_GRID)} weights",
               tuned=True, tuned_setting={**setting, "popularity": g})


def frozen_index(run, keys: np.ndarray, val_queries: np.ndarray, k: int):
    """The index a frozen-feature peer (label kNN, the votes) searches: stage 04's rule for MUFIN's votes, as
    module3/shortlist.json records it, so a peer searches exactly wherever MUFIN's votes do and approximately only
    where theirs may (HNSW above `vote_hnsw_above` keys, where its recall on validation holds). Runs older than that
    record search exactly. Returns (index, record) as retrieval.vote_index."""
    rec = run.shortlist_record
    return vote_index(keys, rec.get("vote_index", "flat"), val_queries[:2000], k, rec.get("vote_hnsw_above", 0),
                      rec.get("vote_min_recall", 1.0))


def _index_note(rec: dict) -> str:
    if rec["vote_index_chosen"] == "flat":
        return ""  # exact, as every peer searched before the rule
    return f"HNSW search (its top-k recall against exact on validation {rec['vote_recall_val']})"


def peer_rows(run, params: PeersParams, k: int, progress: bool = True) -> list[Row]:
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
    has_images = run.module1_saved.image_encoder != "" and np.asarray(emb.image_mean()).size > 0
    mods = list(MODALITIES) if has_images else ["text"]
    tune = None
    if params.tune:
        val = run.split("val-alpha")
        tune = Tuning(val, run.alpha_record["metric"], run.inv_propensity(tuning=True), run.popularity)
    kc = max(k, params.tune_candidates)  # a tuned peer's candidates, which the popularity term may reorder
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
                title = dict(zip(ds.uids["train"], ds.titles["train"]))
                Xtr, Xq = tfidf([ds.titles["train"][i] for i in fit],
                                ds.titles["test"] + ([title[u] for u in tune.split.uids] if tune else []),
                                params.tfidf_ngrams)
                tf = (Xtr, Xq[:n], Xq[n:] if tune else None, time.perf_counter() - t0)
            Xtr, Xte, Xval, tf_s = tf
            if peer == "tfidf-pecos":
                py = pecos_python(params.pecos_python)
                if py is None:
                    rows.append(Row("TF-IDF + PECOS XR-Linear (defaults)", "peer", None,
                                    note="not installed (pip install libpecos in an environment with numpy<2, "
                                         "then pecos_python= or MUFIN_PECOS_PYTHON= its python)"))
                    continue
                s, tr, pr = pecos_scores(Xtr, Y_fit, sp.vstack([Xte, Xval]).tocsr() if tune else Xte, kc, py)
                ms = round(1000 * pr / s.shape[0], 3)
                rows.append(Row("TF-IDF + PECOS XR-Linear (defaults)", "peer", s[:n], round(tf_s + tr, 2), ms,
                                "title TF-IDF features", note=f"run by {py}; its defaults"))
                if tune:
                    rows.append(_tuned_row("TF-IDF + PECOS XR-Linear (tuned)", [({}, s[n:], s[:n], tf_s + tr, ms)],
                                           tune, "title TF-IDF features", f"run by {py}"))
            else:
                beam = peer.endswith("beam")
                threads = f"{params.plt_threads} thread" + ("s" if params.plt_threads > 1 else "")
                search = "beam" if beam else "exact"
                name = f"TF-IDF + napkinXC PLT ({f'beam {params.plt_beam_width}' if beam else 'exact search'}, defaults)"
                fits = []
                settings = [{"C": PLT_C}] + ([{"C": c} for c in PLT_C_GRID if c != PLT_C] if tune and not beam else [])
                if tune and beam:  # the defaults first (their row), then the beam's widths at the C the exact search chose
                    c = next((r.tuned_setting["C"] for r in rows if r.tuned and "exact search" in r.method), PLT_C)
                    settings = [{"C": PLT_C, "beam": params.plt_beam_width}] + [
                        {"C": c, "beam": b} for b in PLT_BEAM_GRID if (c, b) != (PLT_C, params.plt_beam_width)]
                for st in settings:
                    out = plt_scores(Xtr, Y_fit, Xte, kc, search, st.get("beam", params.plt_beam_width), params.seed,
                                     st["C"], also=Xval, threads=params.plt_threads)
                    val_scores = out[3] if Xval is not None else None  # only tuning scores validation
                    fits.append((st, val_scores, out[0], tf_s + out[1], round(1000 * out[2] / n, 3)))
                first = fits[0]
                rows.append(Row(name, "peer", first[2], round(first[3], 2), first[4], "title TF-IDF features",
                                note=f"{threads}; liblinear C={first[0]['C']:g}"))
                if tune:
                    rows.append(_tuned_row(f"TF-IDF + napkinXC PLT ({'beam' if beam else 'exact search'}, tuned)", fits, tune,
                                           "title TF-IDF features", threads))
        elif peer == "label-knn":
            val_uids = run.split("val").uids
            for m in mods:
                t = time.perf_counter()
                index, rec = frozen_index(run, frozen_vectors(emb, ds.uids["label"], m),
                                          frozen_vectors(emb, val_uids[:2000], m), k)
                build = time.perf_counter() - t if rec["vote_index_chosen"] == "hnsw" else 0.0
                t = time.perf_counter()
                s = label_knn_scores(emb, test.uids, ds.uids["label"], m, k, index)
                rows.append(Row(f"label kNN, frozen ({m})", "peer", s, round(build, 2),
                                round(1000 * (time.perf_counter() - t) / n, 3), "cached encoder features",
                                note=_index_note(rec)))
        elif peer == "votes":
            grid = sorted({params.vote_neighbours, *(VOTES_GRID if tune else ())})
            for m in mods:
                t = time.perf_counter()
                index, rec = frozen_index(run, frozen_vectors(emb, fit_uids, m),
                                          frozen_vectors(emb, run.split("val").uids[:2000], m), max(grid))
                build = time.perf_counter() - t
                t = time.perf_counter()
                S, I = index.search(frozen_vectors(emb, test.uids, m), max(grid))
                search_ms = 1000 * (time.perf_counter() - t) / n
                s = votes_of_neighbours(S, I, Y_fit, params.vote_neighbours)
                rows.append(Row(f"training-point votes ({params.vote_neighbours}, untuned), frozen ({m})", "peer", s, round(build, 2),
                                round(search_ms, 3), "cached encoder features", note=_index_note(rec)))
                if tune:
                    Sv, Iv = index.search(frozen_vectors(emb, tune.split.uids, m), max(grid))
                    order = [params.vote_neighbours] + [g for g in grid if g != params.vote_neighbours]
                    cands = [({"neighbours": g}, votes_of_neighbours(Sv, Iv, Y_fit, g), votes_of_neighbours(S, I, Y_fit, g),
                              build if i == 0 else 0.0, round(search_ms, 3)) for i, g in enumerate(order)]
                    rows.append(_tuned_row(f"training-point votes (tuned), frozen ({m})", cands, tune,
                                           "cached encoder features", _index_note(rec)))
    return rows


@dataclass
class PeersResult:
    table: "object"  # pandas DataFrame: one row per method, metrics, intervals against MUFIN, times
    summary: dict  # what metrics.json reports
    twins: "object"  # pandas DataFrame: the run's Module I against its modality twins, with intervals


def stage(run, params: PeersParams, progress: bool = True) -> PeersResult:
    """Stage 07 on a finished run (stages 01-06): MUFIN's rows and the peers' on test, with paired-bootstrap
    intervals of each row's difference to MUFIN at P@1 and PSP@5; writes table_peers.*, table_module1_modalities.*
    and metrics.json."""
    test = run.split("test")
    k = 5 + filter_room(test.filter)
    inv_p = run.inv_propensity()  # the run's A, B (stage 01), as stage 06
    rows = mufin_rows(run, k) + peer_rows(run, params, k, progress)
    ref = run.metrics("evaluate").get("mufin")  # the MUFIN the run predicts with (stage 06)
    ref = next(r for r in rows if r.method == ref)
    ref_parts = {m: point_parts(ref.scores, test.Y, inv_p, test.filter, m) for m in BOOTSTRAP_METRICS}
    out = []
    for r in rows:
        rec = {"data": run.data_name, "method": r.method, "family": r.family, "tuned": r.tuned}
        if r.scores is not None:
            m = evaluate(r.scores, test.Y, inv_p, test.filter)
            rec.update({c: m[c] for c in TABLE_METRICS})
            for m in BOOTSTRAP_METRICS:
                if r is not ref:
                    b = paired_bootstrap(point_parts(r.scores, test.Y, inv_p, test.filter, m), ref_parts[m],
                                         params.bootstrap, params.seed)
                    rec.update({f"{m} - MUFIN": b["diff"], f"{m} 95% lo": b["lo"], f"{m} 95% hi": b["hi"],
                                f"{m} vs MUFIN": b["verdict"]})
        rec.update({"tuned_setting": r.tuned_setting, "train_s": r.train_s, "predict_ms": r.predict_ms, "predict_from": r.predict_from, "note": r.note})
        out.append(rec)
    table = pd.DataFrame(out)
    twins = _twins_vs_main(rows, test, inv_p, params)
    summary = {"data": run.data_title, "synthetic": run.synthetic, "test_points": len(test.uids),
               "bootstrap_resamples": params.bootstrap, "reference": ref.method,
               "propensity": run.propensity,
               "module1_twins_vs_main": twins.to_dict("records"),
               "results": table.astype(object).where(table.notna(), None).to_dict("records")}
    out = run.stage("peers")
    write_table(table, out, "table_peers",
                caption=f"MUFIN and peers, test split ({run.data_title}); differences to MUFIN with 95% paired-bootstrap intervals")
    write_table(twins, out, "table_module1_modalities",
                caption=f"Module I against its modality twins, test split ({run.data_title}), 95% paired-bootstrap intervals")
    save_test_scores(out / TEST_SCORES, [r for r in rows if r.scores is not None])
    write_metrics(out, summary, METRICS)
    return PeersResult(table, summary, twins)


def save_test_scores(path, rows: list[Row]) -> None:
    """Every row's test scores (sparse, top k plus the filter's room), so that the result stages (09, 10, 12) read
    them instead of training the peers again."""
    save_scores(path, [(r.method, r.family, r.scores) for r in rows])


def load_test_scores(run) -> dict[str, tuple[str, sp.csr_matrix]]:
    """method -> (family, test scores) of stage 07's rows."""
    return load_scores(run.need("peers", TEST_SCORES))


class Compared(NamedTuple):
    name: str  # what the result stages' tables call the row
    method: str  # the row in stage 07's table
    family: str  # MUFIN | peer
    scores: sp.csr_matrix  # test scores


def compared_rows(run, n_peers: int = 2, metric: str = "P@5") -> list[Compared]:
    """The rows the result stages put side by side: the run's
    main MUFIN row, MUFIN-(alpha=1), the paper's fusion on the kit's Modules I-IV, and the `n_peers` peers with the
    best test `metric` in stage 07's table (a choice of what to show: nothing is tuned on it)."""
    scores = load_test_scores(run)
    ev = run.metrics("evaluate")
    whose = "the paper's" if ev.get("paper_pipeline") else "kit"
    paper_row = ev.get("paper_fusion") or f"MUFIN (alpha={ev['alpha']})"  # (runs made before the rows were named)
    rows = [("MUFIN (kit fusion, main)", ev["mufin"]), ("MUFIN-(alpha=1)", "MUFIN-(alpha=1)"),
            (f"MUFIN (paper fusion, {whose} Modules I-IV)", paper_row)]
    table = [r for r in run.metrics("peers")["results"] if r["family"] == "peer" and r.get(metric) is not None]
    best = sorted(table, key=lambda r: -r[metric])[:n_peers]
    rows += [(r["method"], r["method"]) for r in best]
    seen, out = set(), []
    for name, method in rows:  # the paper preset's main row is the paper fusion: one column
        if method not in seen:
            seen.add(method)
            out.append(Compared(name, method, *scores[method]))
    return out


def _twins_vs_main(rows: list[Row], test, inv_p, params: PeersParams):
    """Module I's modality twins (stage 02's compare_modalities) against the run's Module I, paired bootstrap: does
    the photo (or the title) help?"""
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
