"""Stage 06, evaluate: the fusion tuned on the validation half that did not choose Module IV's epoch (alpha, and the
kit's added terms), saved with the run (evaluate/alpha.json: how; fusion.json: FusionParams, what prediction uses),
then the main table on test and the prediction time per product through the same Predictor as `mufin predict`.
Also here: the run's trained model as a Predictor (`predictor`) and as a model folder (`export`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..bags import embed_rows
from ..config import choice, ranged
from ..data.amazon import Product
from ..data.images import ImageStore
from ..fusion import (FusionParams, added, label_bins, mufin_variants, pair_terms, paper_fusion_name, save_alpha, score_shortlists,
                      tune_alpha, tune_alpha_bins, tune_terms)
from ..layout import METRICS, MODEL, TEST_SCORES
from ..metrics import evaluate, filter_room
from ..module1 import module1_scores
from ..predictor import Predictor, ShortlistParams, time_recommend
from ..report import read_paper_table, save_scores, write_metrics, write_table
from ..training import saved_record


@dataclass
class EvaluateParams:
    """Stage 06's parameters (notebook 06's parameters cell equals these defaults)."""
    alpha_metric: str = choice("P@1", "P@3", "P@5", "nDCG@3", "nDCG@5", "PSP@1", "PSP@3", "PSP@5")  # the validation metric that picks alpha
    # kit option (the paper's future work, popularity-aware scoring): one alpha per bin of label training frequency,
    # tuned on validation from the global alpha, one bin at a time; "" keeps one alpha for every label (the paper)
    frequency_bins: str = ""  # bin edges in training points per label, e.g. "2,5,20": bins 0-1, 2-4, 5-19, 20+
    # kit options: + beta * training-point votes and + gamma * log-popularity, beta, gamma and alpha tuned together on
    # validation over VOTE_GRID x PRIOR_GRID x the alpha grid. The defaults (votes on, log-popularity off) are what
    # benchmarks/fusion_choices.py's rule chose on validation alone (REPRODUCE.md); the paper preset turns both off
    votes: bool = True
    prior: bool = False
    vote_neighbours: int = ranged(20, 1)  # Module I's nearest fit points that vote
    timing_points: int = ranged(50, 0)  # products encoded from raw title and images to time prediction (0: no timing)
    seed: int = ranged(0, 0)  # numpy and torch seeds: 0 or more



@dataclass
class EvaluateResult:
    alpha: float  # the paper's score's alpha
    fusion: FusionParams  # what the run predicts with
    curve: list  # validation metrics per alpha of the grid (the paper's score)
    table: pd.DataFrame  # Module I, MUFIN-(alpha=1), Module IV alone, MUFIN on test
    timing: dict  # ms per point: encode / retrieve / rank
    summary: dict  # metrics.json


def paper_p1() -> float | None:
    """MUFIN's P@1 as the paper reports it on MM-AmazonTitles-300K (../shared/paper_tables: data, shown in its own
    column, never as the kit's result); None where the paper's tables are absent."""
    try:
        t = read_paper_table("later_work_mm_amazontitles_300k.csv")
    except FileNotFoundError:
        return None
    row = t[t["method"].str.startswith("MUFIN (Mittal")]
    return float(row.iloc[0]["P@1"]) if len(row) else None


def score_split(run, split: str, ranker=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embedding scores, ranker scores, shortlist) of a split's shortlists, by the run's ranker or another one (a
    variant trained on the same run)."""
    _, sl = run.shortlists(split)
    e, r = score_shortlists(ranker or run.ranker, run.bags, run.bags.rows_of(run.split(split).uids), run.label_rows, sl,
                            module1=run.module1)
    return e, r, sl


def split_terms(run, split: str, shortlist: np.ndarray, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(training-point votes, log-popularity) of each shortlisted (point, label) of a split."""
    x1 = embed_rows(run.module1, run.bags, run.bags.rows_of(run.split(split).uids))
    return pair_terms(run.train_votes(neighbours), run.popularity, x1, shortlist, run.found_neighbours(split, neighbours))


def _tune(run, params: EvaluateParams) -> dict:
    """alpha (the paper's score), then alpha with the added terms and per frequency bin, on the val-alpha half: the
    record save_alpha writes (alpha, metric, curve, by_frequency, terms). PSP, when it tunes, counts fit points only."""
    inv_p = run.inv_propensity(tuning=True)
    val = run.split("val-alpha")  # the other half chose Module IV's epoch
    e, r, sl = score_split(run, "val-alpha")
    alpha, curve = tune_alpha(e, r, sl, val.Y, val.filter, inv_p, metric=params.alpha_metric)
    terms, extra = None, 0.0
    if params.votes or params.prior:
        v, p = split_terms(run, "val-alpha", sl, params.vote_neighbours)
        terms = {**tune_terms(e, r, sl, v, p, val.Y, val.filter, inv_p, params.alpha_metric, params.votes, params.prior),
                 "votes": params.votes, "prior": params.prior, "vote_neighbours": params.vote_neighbours}
        # the same terms on Module I's score alone (alpha = 1, no Module IV), tuned the same way: does the ranker
        # earn its keep in the kit's fusion?
        terms["without_ranker"] = tune_terms(e, r, sl, v, p, val.Y, val.filter, inv_p, params.alpha_metric,
                                             params.votes, params.prior, grid=np.array([1.0]))
        extra = added(terms, v, p)
    by_freq = None
    if params.frequency_bins:
        bins, names = label_bins(run.fit_labels, params.frequency_bins)
        per_bin, _ = tune_alpha_bins(e, r, sl, val.Y, val.filter, inv_p, bins, len(names),
                                     terms["alpha"] if terms else alpha, metric=params.alpha_metric, extra=extra)
        by_freq = {"edges": params.frequency_bins, "bins": names, "alphas": [float(a) for a in per_bin],
                   "labels_per_bin": np.bincount(bins, minlength=len(names)).tolist()}
    return {"alpha": alpha, "metric": params.alpha_metric, "curve": curve, "by_frequency": by_freq, "terms": terms}


def _forget_fusion(run) -> None:
    """A re-run of stage 06 in the same kernel reads its new fusion record, not the one cached before."""
    for name in ("alpha_record", "fusion"):
        run.__dict__.pop(name, None)


def stage(run, params: EvaluateParams) -> EvaluateResult:
    """Tune the fusion on validation (saved with the run), then the main table on test (table2_main.*), the
    prediction time and metrics.json."""
    inv_p = run.inv_propensity()
    out = run.stage("evaluate")
    rec = _tune(run, params)
    save_alpha(out, rec["alpha"], rec["metric"], rec["curve"], rec["by_frequency"], rec["terms"])
    fusion = FusionParams.from_record(rec)
    fusion.save(out)
    _forget_fusion(run)
    test = run.split("test")
    e, r, sl = score_split(run, "test")
    v, p = split_terms(run, "test", sl, params.vote_neighbours) if rec["terms"] else (None, None)
    m1 = module1_scores(run.module1, run.bags, test.uids, run.dataset.uids["label"], 5 + filter_room(test.filter))
    per_label = fusion.label_alpha(run.fit_labels) if rec["by_frequency"] else None
    scored = [("Module I only (exact NN)", m1)] + mufin_variants(rec, per_label, e, r, sl, test.Y.shape[1], v, p,
                                                                 run.modules_name)
    rows = [{"method": name, **evaluate(scores, test.Y, inv_p, test.filter)} for name, scores in scored]
    # every row's test scores, for the ablations (stage 08) to compare runs point by point without recomputing them
    save_scores(out / TEST_SCORES, [(name, "MUFIN", scores) for name, scores in scored])
    table = pd.DataFrame(rows)
    table.insert(0, "data", run.data_name)
    table["A"], table["B"] = run.propensity["A"], run.propensity["B"]
    main = rows[-1]["method"]  # the MUFIN the run predicts with
    paper_row = paper_fusion_name(rec["alpha"], run.modules_name)  # the paper's score on this run's Modules I-IV
    # the paper's figure stands beside a row computed with the paper's pipeline only (its Modules I-IV, its score)
    paper = paper_p1() if not run.pipeline else None
    table["paper_P@1 (MM-AmazonTitles-300K)"] = [paper if m == paper_row else None for m in table["method"]]
    timing = prediction_time(run, params.timing_points, sl.shape[1], params.seed) if params.timing_points else {}
    by = table.set_index("method")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "alpha": rec["alpha"],
               "alpha_metric": params.alpha_metric, "alpha_by_frequency": rec["by_frequency"],
               "fusion_terms": rec["terms"], "mufin": main, "paper_fusion": paper_row,
               "pipeline": run.modules_name, "paper_pipeline": not run.pipeline, "A": run.propensity["A"], "B": run.propensity["B"],
               "propensity_from": run.propensity["from"],
               "results": table.to_dict("records"), "timing_ms_per_point": timing,
               "mufin_minus_alpha1_P@1": round(by.loc[main, "P@1"] - by.loc["MUFIN-(alpha=1)", "P@1"], 4)}
    write_table(table, out, "table2_main",
                caption=f"Main results, test split ({run.data_title}); paper column: reported on MM-AmazonTitles-300K")
    write_metrics(out, summary, METRICS)
    return EvaluateResult(rec["alpha"], fusion, rec["curve"], table, timing, summary)


# ---- the run's model, carried ------------------------------------------------------------------------

def predictor(run) -> Predictor:
    """The run's trained MUFIN (stages 02-06) as a Predictor: what `mufin predict --run` uses and `export` saves."""
    ds = run.dataset
    return Predictor(run.module1, vars(run.module1_saved), run.ranker,
                     saved_record(run.need("module4", MODEL))["params"], run.index, run.bags.subset(ds.uids["label"]),
                     ds.titles["label"], run.fit_embeddings, run.fit_labels, run.fusion,
                     ShortlistParams.from_stage(run.shortlist_record),
                     origin={"run": str(run.dir), "data": run.data_title}, vote_index=run.vote_index)


def export(run, folder: str | Path) -> Path:
    """Write the run's model folder (Predictor.load reads it alone)."""
    return predictor(run).save(folder)


def prediction_time(run, n_points: int = 50, shortlist: int = 100, seed: int = 0) -> dict:
    """ms per point of encode (raw title and images through the encoders and Module I) / retrieve / rank, for test
    products in one batch, through the run's Predictor (its saved fusion)."""
    ds = run.dataset
    store = ImageStore.from_dir(ds.root)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds.uids["test"]), size=min(n_points, len(ds.uids["test"])), replace=False)
    prods = [Product(ds.uids["test"][i], ds.titles["test"][i], images=store.get(ds.uids["test"][i])) for i in idx]
    return time_recommend(predictor(run), prods, shortlist)
