"""Fusion (spec §8) and stage 06: score = alpha * <x^1, z_l^1> + (1 - alpha) * ranker(x, l) over each shortlist.

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


def fuse(emb: np.ndarray, rnk: np.ndarray, shortlist: np.ndarray, alpha, n_labels: int) -> sp.csr_matrix:
    """Sparse scores alpha * emb + (1 - alpha) * ranker over each shortlist (shifted positive). `alpha`: one number,
    or one per label (popularity-aware fusion)."""
    if not np.isscalar(alpha):
        alpha = np.asarray(alpha, np.float32)[np.maximum(shortlist, 0)]
    s = alpha * emb + (1 - alpha) * rnk
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
                    grid=np.linspace(0, 1, 11), metric: str = "P@1", rounds: int = 2) -> tuple[np.ndarray, list]:
    """One alpha per label-frequency bin: from the global alpha, each bin's alpha in turn set to the grid value with
    the best validation metric (ties: keep the current one), `rounds` times over the bins."""
    per_bin = np.full(n_bins, float(alpha0))
    best = evaluate(fuse(emb, rnk, shortlist, per_bin[bins], Y.shape[1]), Y, inv_p, filt)[metric]
    log = []
    for r in range(rounds):
        for b in range(n_bins):
            for a in grid:
                trial = per_bin.copy(); trial[b] = round(float(a), 3)
                m = evaluate(fuse(emb, rnk, shortlist, trial[bins], Y.shape[1]), Y, inv_p, filt)[metric]
                log.append({"round": r + 1, "bin": b, "alpha": round(float(a), 3), metric: m})
                if m > best + 1e-9:
                    best, per_bin = m, trial
    return per_bin, log


def evaluate_fused(emb, rnk, shortlist, alpha: float, split, inv_p) -> dict:
    """Metrics of the fused scores at `alpha` on a split (truth and filter from `split`)."""
    return evaluate(fuse(emb, rnk, shortlist, alpha, split.Y.shape[1]), split.Y, inv_p, split.filter)


def save_alpha(folder: str | Path, alpha: float, metric: str, curve: list[dict], by_frequency: dict | None = None) -> Path:
    """alpha with the validation metric that chose it and the whole curve, saved beside the run's results; with
    popularity-aware fusion also {"edges", "bins" (names), "alphas"} per label-frequency bin."""
    f = Path(folder) / ALPHA_FILE
    with atomic_write(f) as out:
        json.dump({"alpha": alpha, "metric": metric, "curve": curve, "by_frequency": by_frequency}, out, indent=2)
    return f


def label_alphas(run) -> float | np.ndarray:
    """The fusion weight a run predicts with: its alpha, or one per label when stage 06 tuned them by frequency."""
    rec = run.alpha_record
    by = rec.get("by_frequency")
    if not by:
        return rec["alpha"]
    bins, _ = label_bins(run.dataset.Y["train"], by["edges"])
    return np.asarray(by["alphas"], np.float32)[bins]


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


def mufin_variants(alpha: float, by_freq: dict | None, per_label) -> list[tuple[str, object]]:
    """(name, alpha) of MUFIN's fused rows, the one the run predicts with last."""
    out = [("MUFIN-(alpha=1)", 1.0), ("Module IV only (alpha=0)", 0.0), (f"MUFIN (alpha={alpha})", alpha)]
    if by_freq:
        desc = ", ".join(f"{n}: {a:g}" for n, a in zip(by_freq["bins"], by_freq["alphas"]))
        out.append((f"MUFIN (alpha by label frequency; {desc})", per_label))
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
    by_freq, per_label = None, None
    if params.frequency_bins:
        bins, names = label_bins(run.dataset.Y["train"], params.frequency_bins)
        per_bin, _ = tune_alpha_bins(e, r, sl, val.Y, val.filter, inv_p, bins, len(names), alpha, metric=params.alpha_metric)
        by_freq = {"edges": params.frequency_bins, "bins": names, "alphas": [float(a) for a in per_bin],
                   "labels_per_bin": np.bincount(bins, minlength=len(names)).tolist()}
        per_label = per_bin[bins]
    save_alpha(run.stage("evaluate"), alpha, params.alpha_metric, curve, by_freq)
    e, r, sl = score_split(run, "test")
    rows = [{"method": "Module I only (exact NN)",
             **evaluate_model(run.module1, run.dataset, run.embeddings, "test", run.module1_params, inv_p)}]
    for name, a in mufin_variants(alpha, by_freq, per_label):
        rows.append({"method": name, **evaluate_fused(e, r, sl, a, test, inv_p)})
    table = pd.DataFrame(rows)
    table.insert(0, "data", run.data_name)
    table["A"], table["B"] = params.propensity_A, params.propensity_B
    main = rows[-1]["method"]  # the MUFIN the run predicts with
    table["paper_P@1 (MM-AmazonTitles-300K)"] = [PAPER_P1["MUFIN"] if m == main else None for m in table["method"]]
    timing = (time_prediction(run, n_points=params.timing_points, shortlist=sl.shape[1], seed=params.seed)
              if params.timing_points else {})
    by = table.set_index("method")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "alpha": alpha, "alpha_metric": params.alpha_metric,
               "alpha_by_frequency": by_freq, "mufin": main,
               "A": params.propensity_A, "B": params.propensity_B, "results": table.to_dict("records"),
               "timing_ms_per_point": timing,
               "mufin_minus_alpha1_P@1": round(by.loc[main, "P@1"] - by.loc["MUFIN-(alpha=1)", "P@1"], 4)}
    return EvaluateResult(alpha, curve, table, timing, summary)
