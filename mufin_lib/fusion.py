"""Fusion (spec §8) and stage 06: score = alpha * <x^1, z_l^1> + (1 - alpha) * ranker(x, l) over each shortlist.

Kit options (not the paper; named in EvaluateParams): alpha per label-frequency bin, and two added terms from the
training points, beta * votes(x, l) (Module III's training-point votes: the summed similarities of the point's
nearest training points that bought l, over the number of voters) and gamma * log(1 + n_l) / log(1 + max n)
(label popularity in the fit points): the per-label evidence and bias that a unit-norm cosine score lacks.

This module owns alpha: it scores shortlists (the embedding score from the Module I model that retrieved them,
the ranker's score), tunes alpha on validation, saves it with its metric and curve in evaluate/alpha.json,
loads it back (`open_run(...).alpha`, which `Predictor` uses) and evaluates fused scores. Notebook 06 is
`evaluate_stage(open_run(run_dir), EvaluateParams(...))`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .bags import to_device
from .config import choice, ranged
from .metrics import evaluate
from .paths import atomic_write

ALPHA_FILE = "alpha.json"


@dataclass
class EvaluateParams:
    """Stage 06's parameters (notebook 06's parameters cell equals these defaults)."""
    alpha_metric: str = choice("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5")  # the validation metric that picks alpha
    propensity_A: float = ranged(0.6, 0, lo_open=True)
    propensity_B: float = ranged(2.6, 0)
    # kit option (the paper's future work, popularity-aware scoring): one alpha per bin of label training frequency,
    # tuned on validation from the global alpha, one bin at a time; "" keeps one alpha for every label (the paper)
    frequency_bins: str = ""  # bin edges in training points per label, e.g. "2,5,20": bins 0-1, 2-4, 5-19, 20+
    # kit options (on by default; the paper preset turns them off): + beta * training-point votes and + gamma *
    # log-popularity, beta, gamma and alpha tuned together on validation over VOTE_GRID x PRIOR_GRID x the alpha grid
    votes: bool = True
    prior: bool = True
    vote_neighbours: int = ranged(20, 1)  # Module I's nearest fit points that vote
    timing_points: int = ranged(50, 0)  # products encoded from raw title and images to time prediction (0: no timing)
    seed: int = 0


@torch.no_grad()
def score_pairs(ranker, point_inputs, label_table, label_rows: np.ndarray, shortlist: np.ndarray,
                module1=None):
    """(embedding score <x^1, z_l^1>, ranker score) for each (point, shortlisted label) of one batch of
    points given as model inputs; -inf where the shortlist has no label. The embedding score comes from
    `module1` (the Module I model that retrieved the shortlist); Module IV trains its own copy of those
    layers for the ranker score."""
    dev = next(ranker.parameters()).device
    emb = np.full(shortlist.shape, -np.inf, np.float32)
    rnk = np.full(shortlist.shape, -np.inf, np.float32)
    valid = shortlist >= 0
    if not valid.any():
        return emb, rnk
    labels, inv = np.unique(shortlist[valid], return_inverse=True)
    pp = np.nonzero(valid)[0]
    x1, X1, m1 = ranker.encoder(*to_device(point_inputs, dev))
    z1, Z1, mz = ranker.encoder(*to_device(label_table.batch(label_rows[labels]), dev))
    ppt, plt = torch.from_numpy(pp).to(dev), torch.from_numpy(inv).to(dev)
    r = ranker.pair_scores(X1[ppt], m1[ppt], x1[ppt], Z1[plt], mz[plt], z1[plt], torch.from_numpy(labels).to(dev)[plt])
    if module1 is not None:
        module1.eval()
        x1, _, _ = module1(*to_device(point_inputs, dev))
        z1, _, _ = module1(*to_device(label_table.batch(label_rows[labels]), dev))
    emb[valid] = (x1[ppt] * z1[plt]).sum(-1).float().cpu().numpy()
    rnk[valid] = r.float().cpu().numpy()
    return emb, rnk


@torch.no_grad()
def score_shortlists(ranker, table, point_rows: np.ndarray, label_rows: np.ndarray, shortlist: np.ndarray,
                     module1=None, batch_points: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """score_pairs over all points of a split, in batches."""
    ranker.eval()
    parts = [score_pairs(ranker, table.batch(point_rows[s:s + batch_points]), table, label_rows,
                         shortlist[s:s + batch_points], module1) for s in range(0, len(shortlist), batch_points)]
    if not parts:
        return np.zeros(shortlist.shape, np.float32), np.zeros(shortlist.shape, np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fuse(emb: np.ndarray, rnk: np.ndarray, shortlist: np.ndarray, alpha, n_labels: int, extra=0.0) -> sp.csr_matrix:
    """Sparse scores alpha * emb + (1 - alpha) * ranker + extra over each shortlist (shifted positive). `alpha`: one
    number, or one per label (popularity-aware fusion); `extra`: the added terms (`added`), shaped as the shortlist."""
    if not np.isscalar(alpha):
        alpha = np.asarray(alpha, np.float32)[np.maximum(shortlist, 0)]
    s = alpha * emb + (1 - alpha) * rnk + extra
    valid = (shortlist >= 0) & np.isfinite(s)
    rows = np.nonzero(valid)[0]
    return sp.csr_matrix((s[valid] + 10.0, (rows, shortlist[valid])), shape=(len(shortlist), n_labels))


def tune_alpha(emb, rnk, shortlist, Y, filt, inv_p, grid=np.linspace(0, 1, 11), metric: str = "P@1") -> tuple[float, list]:
    """The alpha of the grid with the best validation metric (ties: the larger alpha)."""
    curve = []
    for a in grid:
        m = evaluate(fuse(emb, rnk, shortlist, float(a), Y.shape[1]), Y, inv_p, filt)
        curve.append({"alpha": round(float(a), 3), **m})
    best = max(curve, key=lambda r: (r[metric], r["alpha"]))
    return best["alpha"], curve


VOTE_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PRIOR_GRID = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6)


def fit_labels(run) -> sp.csr_matrix:
    """The labels of the fit points (train minus validation): what label frequencies are counted on, so that a
    validation point's own labels never count towards what tunes the fusion."""
    return run.dataset.Y["train"][run.carve[0]]


def log_popularity(Y_fit: sp.csr_matrix) -> np.ndarray:
    """Per label, log(1 + training points) / log(1 + the most): 0 for unseen labels, 1 for the most popular."""
    freq = np.asarray((sp.csr_matrix(Y_fit) > 0).sum(0)).ravel()
    return (np.log1p(freq) / max(np.log1p(freq.max()), 1e-12)).astype(np.float32)


def point_terms(run, x1: np.ndarray, shortlist: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(votes, log-popularity) of each shortlisted (point, label), for points embedded by Module I (x1)."""
    votes = run.train_votes(neighbours).pair_votes(x1, shortlist)
    return votes, np.where(shortlist >= 0, log_popularity(fit_labels(run))[np.maximum(shortlist, 0)], 0.0)


def split_terms(run, split: str, shortlist: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """point_terms for a split's points."""
    from .bags import embed_rows
    x1 = embed_rows(run.module1, run.bags, run.bags.rows_of(run.split(split).uids))
    return point_terms(run, x1, shortlist, neighbours)


def added(terms: dict | None, votes, prior):
    """beta * votes + gamma * log-popularity as `terms` (the record stage 06 saves) weighs them; 0 without terms."""
    if not terms:
        return 0.0
    return terms["vote_weight"] * votes + terms["prior_weight"] * prior


def tune_terms(emb, rnk, shortlist, votes, prior, Y, filt, inv_p, metric: str = "P@1", use_votes: bool = True,
               use_prior: bool = True, grid=np.linspace(0, 1, 11)) -> dict:
    """alpha, beta (votes) and gamma (log-popularity) together: the point of alpha grid x VOTE_GRID x PRIOR_GRID with
    the best validation metric (ties: the larger alpha, then the smaller weights)."""
    best, key = None, None
    inv_p = inv_p if metric.startswith("PS") else None  # P@k and nDCG@k need no propensities (and are faster without)
    for b in (VOTE_GRID if use_votes else (0.0,)):
        for g in (PRIOR_GRID if use_prior else (0.0,)):
            extra = b * votes + g * prior
            for a in grid:
                m = evaluate(fuse(emb, rnk, shortlist, float(a), Y.shape[1], extra), Y, inv_p, filt)[metric]
                k = (m, round(float(a), 3), -b, -g)
                if key is None or k > key:
                    key, best = k, {"alpha": round(float(a), 3), "vote_weight": b, "prior_weight": g, metric: m}
    return best


def label_bins(Y_train: sp.csr_matrix, edges: str) -> tuple[np.ndarray, list[str]]:
    """Each label's frequency bin (0..len(edges)) from its number of training points, and the bins' names."""
    cuts = [int(x) for x in edges.split(",") if x.strip()]
    if cuts != sorted(set(cuts)) or any(c < 1 for c in cuts):
        raise ValueError(f"frequency_bins '{edges}': expected increasing positive integers, e.g. 2,5,20")
    freq = np.asarray((sp.csr_matrix(Y_train) > 0).sum(0)).ravel()
    lo = [0] + cuts
    names = [f"{a}-{b - 1}" if b - 1 > a else f"{a}" for a, b in zip(lo, cuts)] + [f"{lo[-1]}+"]
    return np.searchsorted(cuts, freq, side="right"), names


def tune_alpha_bins(emb, rnk, shortlist, Y, filt, inv_p, bins: np.ndarray, n_bins: int, alpha0: float,
                    grid=np.linspace(0, 1, 11), metric: str = "P@1", rounds: int = 2, extra=0.0) -> tuple[np.ndarray, list]:
    """One alpha per label-frequency bin: from the global alpha, each bin's alpha in turn set to the grid value with
    the best validation metric (ties: keep the current one), `rounds` times over the bins."""
    per_bin = np.full(n_bins, float(alpha0))
    best = evaluate(fuse(emb, rnk, shortlist, per_bin[bins], Y.shape[1], extra), Y, inv_p, filt)[metric]
    log = []
    for r in range(rounds):
        for b in range(n_bins):
            for a in grid:
                trial = per_bin.copy(); trial[b] = round(float(a), 3)
                m = evaluate(fuse(emb, rnk, shortlist, trial[bins], Y.shape[1], extra), Y, inv_p, filt)[metric]
                log.append({"round": r + 1, "bin": b, "alpha": round(float(a), 3), metric: m})
                if m > best + 1e-9:
                    best, per_bin = m, trial
    return per_bin, log


def evaluate_fused(emb, rnk, shortlist, alpha: float, split, inv_p) -> dict:
    """Metrics of the fused scores at `alpha` on a split (truth and filter from `split`)."""
    return evaluate(fuse(emb, rnk, shortlist, alpha, split.Y.shape[1]), split.Y, inv_p, split.filter)


def save_alpha(folder: str | Path, alpha: float, metric: str, curve: list[dict], by_frequency: dict | None = None,
               terms: dict | None = None) -> Path:
    """alpha (the paper's score alone) with the validation metric that chose it and the whole curve, saved beside the
    run's results; with popularity-aware fusion also {"edges", "bins" (names), "alphas"} per label-frequency bin; with
    the added terms {"alpha", "vote_weight", "prior_weight", "vote_neighbours"} (the per-bin alphas then start from
    that alpha and are tuned with the terms in)."""
    f = Path(folder) / ALPHA_FILE
    with atomic_write(f) as out:
        json.dump({"alpha": alpha, "metric": metric, "curve": curve, "by_frequency": by_frequency, "terms": terms},
                  out, indent=2)
    return f


def label_alphas(run) -> float | np.ndarray:
    """The fusion weight a run predicts with: one per label when stage 06 tuned them by frequency, else the alpha
    tuned with the added terms, else its alpha."""
    rec = run.alpha_record
    by = rec.get("by_frequency")
    if not by:
        return (rec.get("terms") or rec)["alpha"]
    bins, _ = label_bins(fit_labels(run), by["edges"])
    return np.asarray(by["alphas"], np.float32)[bins]


def run_extra(run, x1: np.ndarray, shortlist: np.ndarray):
    """The added terms a run predicts with, for points embedded by Module I (0 when stage 06 added none)."""
    terms = run.alpha_record.get("terms")
    if not terms:
        return 0.0
    return added(terms, *point_terms(run, x1, shortlist, terms["vote_neighbours"]))


def load_alpha(folder: str | Path) -> dict:
    f = Path(folder) / ALPHA_FILE
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing; run notebook 06_evaluate first (it tunes alpha)")
    rec = json.loads(f.read_text())
    if not isinstance(rec.get("alpha"), (int, float)) or not 0.0 <= rec["alpha"] <= 1.0:
        raise ValueError(f"{f}: 'alpha' must be a number in [0, 1], got {rec.get('alpha')!r}")
    return rec


def score_split(run, split: str, ranker=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embedding scores, ranker scores, shortlist) of a split's shortlists in an open run, by the run's ranker
    or another one (a variant trained on the same run)."""
    _, sl = run.shortlists(split)
    e, r = score_shortlists(ranker or run.ranker, run.bags, run.bags.rows_of(run.split(split).uids), run.label_rows, sl,
                            module1=run.module1)
    return e, r, sl


def mufin_variants(rec: dict, per_label, emb, rnk, shortlist, n_labels: int, votes=None, prior=None) -> list[tuple[str, sp.csr_matrix]]:
    """(name, test scores) of MUFIN's fused rows from a stage-06 record (`save_alpha`'s fields), the one the run
    predicts with last; with added terms also the training-point votes alone (what they bring without Module I/IV)."""
    alpha, by_freq, terms = rec["alpha"], rec.get("by_frequency"), rec.get("terms")
    out = [("MUFIN-(alpha=1)", fuse(emb, rnk, shortlist, 1.0, n_labels)),
           ("Module IV only (alpha=0)", fuse(emb, rnk, shortlist, 0.0, n_labels)),
           (f"MUFIN (alpha={alpha})", fuse(emb, rnk, shortlist, alpha, n_labels))]
    name = ("alpha by label frequency; " + ", ".join(f"{n}: {a:g}" for n, a in zip(by_freq["bins"], by_freq["alphas"]))
            if by_freq else f"alpha={terms['alpha']:g}" if terms else "")
    extra = 0.0
    if terms:
        if terms.get("votes"):
            out.append((f"training-point votes alone (Module I, {terms['vote_neighbours']} neighbours)",
                        fuse(votes, votes, shortlist, 1.0, n_labels)))
        extra = added(terms, votes, prior)
        name += f" + {terms['vote_weight']:g} votes + {terms['prior_weight']:g} log-popularity"
    if by_freq or terms:
        out.append((f"MUFIN ({name})", fuse(emb, rnk, shortlist, per_label if by_freq else terms["alpha"], n_labels, extra)))
    return out


@dataclass
class EvaluateResult:
    alpha: float
    curve: list  # validation metrics per alpha of the grid
    table: "object"  # pandas DataFrame: Module I, MUFIN-(alpha=1), Module IV alone, MUFIN on test
    timing: dict  # ms per point: encode / retrieve / rank
    summary: dict  # what metrics.json reports


# the paper's figures, as data: MM-AmazonTitles-300K, paper's encoders, 4 V100s (supplementary §F, Table 6)
PAPER_P1 = {"MUFIN": 52.30}


def evaluate_stage(run, params: EvaluateParams) -> EvaluateResult:
    """Stage 06: tune alpha on the validation half that did not choose Module IV's epoch (saved with the run), then the main table on test."""
    import pandas as pd

    from .module1 import evaluate_model
    from .predict import time_prediction

    inv_p = run.inv_propensity(params.propensity_A, params.propensity_B)
    val, test = run.split("val-alpha"), run.split("test")  # the other half chose Module IV's epoch
    e, r, sl = score_split(run, "val-alpha")
    alpha, curve = tune_alpha(e, r, sl, val.Y, val.filter, inv_p, metric=params.alpha_metric)
    terms, extra = None, 0.0
    if params.votes or params.prior:
        v, p = split_terms(run, "val-alpha", sl, params.vote_neighbours)
        terms = {**tune_terms(e, r, sl, v, p, val.Y, val.filter, inv_p, params.alpha_metric, params.votes, params.prior),
                 "votes": params.votes, "prior": params.prior, "vote_neighbours": params.vote_neighbours}
        extra = added(terms, v, p)
    by_freq, per_label = None, None
    if params.frequency_bins:
        bins, names = label_bins(fit_labels(run), params.frequency_bins)
        per_bin, _ = tune_alpha_bins(e, r, sl, val.Y, val.filter, inv_p, bins, len(names),
                                     terms["alpha"] if terms else alpha, metric=params.alpha_metric, extra=extra)
        by_freq = {"edges": params.frequency_bins, "bins": names, "alphas": [float(a) for a in per_bin],
                   "labels_per_bin": np.bincount(bins, minlength=len(names)).tolist()}
        per_label = per_bin[bins]
    save_alpha(run.stage("evaluate"), alpha, params.alpha_metric, curve, by_freq, terms)
    e, r, sl = score_split(run, "test")
    v, p = split_terms(run, "test", sl, params.vote_neighbours) if terms else (None, None)
    rows = [{"method": "Module I only (exact NN)",
             **evaluate_model(run.module1, run.dataset, run.embeddings, "test", run.module1_params, inv_p)}]
    rec = {"alpha": alpha, "by_frequency": by_freq, "terms": terms}
    for name, scores in mufin_variants(rec, per_label, e, r, sl, test.Y.shape[1], v, p):
        rows.append({"method": name, **evaluate(scores, test.Y, inv_p, test.filter)})
    table = pd.DataFrame(rows)
    table.insert(0, "data", run.data_name)
    table["A"], table["B"] = params.propensity_A, params.propensity_B
    main = rows[-1]["method"]  # the MUFIN the run predicts with
    paper_row = f"MUFIN (alpha={alpha})"  # the paper's score (the kit's options are not the paper's method)
    table["paper_P@1 (MM-AmazonTitles-300K)"] = [PAPER_P1["MUFIN"] if m == paper_row else None for m in table["method"]]
    timing = (time_prediction(run, n_points=params.timing_points, shortlist=sl.shape[1], seed=params.seed)
              if params.timing_points else {})
    by = table.set_index("method")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "alpha": alpha, "alpha_metric": params.alpha_metric,
               "alpha_by_frequency": by_freq, "fusion_terms": terms, "mufin": main,
               "A": params.propensity_A, "B": params.propensity_B, "results": table.to_dict("records"),
               "timing_ms_per_point": timing,
               "mufin_minus_alpha1_P@1": round(by.loc[main, "P@1"] - by.loc["MUFIN-(alpha=1)", "P@1"], 4)}
    return EvaluateResult(alpha, curve, table, timing, summary)
