"""Stage 04, module3: Module III, every train, validation and test point's shortlist from the saved index (and,
as a kit option, from training-point votes or label centroids), saved under module3/shortlist_<split>.npz."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..bags import embed_rows
from ..config import choice, ranged
from ..layout import FIT_EMBEDDINGS, METRICS, SHORTLIST, SHORTLIST_PARAMS, VOTE_INDEX, VOTE_NEIGHBOURS
from ..metrics import recall_at_k
from ..paths import atomic_write
from ..report import write_metrics, write_table
from ..retrieval import save_fit_embeddings, save_shortlist, save_vote_neighbours, shortlist_points, vote_index


@dataclass
class Module3Params:
    """Stage 04's parameters (notebook 04's parameters cell equals these defaults)."""
    shortlist: int = ranged(100, 1)  # labels kept per point (authors' code: 300)
    # kit option (the XC family's shortlists through training points, as ECLARE/NGAME): part of each shortlist from
    # "votes": the labels of the point's nearest fit points by Module I's embedding (similarity-weighted votes), or
    # "centroid": the labels whose fit points' mean embedding is nearest the point (DECAF/ECLARE's label centroids).
    # "none": the index alone (the paper)
    augment: str = choice("none", "votes", "centroid")
    vote_neighbours: int = ranged(20, 1)  # fit points that vote
    augment_share: float = ranged(0.5, 0, 1)  # the share of the shortlist the second source may fill (interleaved)
    # the index the votes search (here and in the fusion): "auto" is exact up to vote_hnsw_above fit points, beyond
    # HNSW where its neighbours' recall against exact on validation is at least vote_min_recall (retrieval.vote_index)
    vote_index: str = choice("auto", "flat", "hnsw")
    vote_hnsw_above: int = ranged(100_000, 0)
    vote_min_recall: float = ranged(0.95, 0, 1)


@dataclass
class Module3Result:
    table: pd.DataFrame  # one row per split (and per source alone on test): recall of the shortlists
    summary: dict  # metrics.json


def second_source(run, augment: str, vote_neighbours: int):
    """The shortlist source beside the index: the run's training-point votes or label centroids (None: the index)."""
    if augment == "none":
        return None
    if augment == "votes":
        return run.train_votes(vote_neighbours)
    if augment == "centroid":
        return run.label_centroids
    raise ValueError(f"augment '{augment}': expected none, votes or centroid")


def _source(params: Module3Params) -> str:
    if params.augment == "none":
        return "index"
    what = f"votes of {params.vote_neighbours} training points" if params.augment == "votes" else "label centroids"
    return f"index + {what} (up to {params.augment_share:.0%})"


def stage(run, params: Module3Params) -> Module3Result:
    """Shortlist every split; on test also each source alone (the index, votes, centroids), for comparison. Writes
    the shortlists, shortlist.json (how they were made: prediction makes them so), module3_shortlists.* and
    metrics.json."""
    out, rows = run.stage("module3"), []
    fit_pos = np.full(run.dataset.Y["train"].shape[0], -1)
    fit_pos[run.carve[0]] = np.arange(len(run.carve[0]))  # a training point's own row among the voters
    ks = [k for k in (10, 50, 100, 200, 300) if k <= params.shortlist]
    splits = {name: run.split(name) for name in ("train", "val", "test")}
    x1s = {name: embed_rows(run.module1, run.bags, run.bags.rows_of(sp.uids)) for name, sp in splits.items()}
    # the fit points are train's rows at carve[0]: embedded once, saved for the later stages' processes
    run.fit_embeddings = x1s["train"][run.carve[0]]
    save_fit_embeddings(out / FIT_EMBEDDINGS, run.fit_embeddings, run.split("fit").uids, run.module1_sha)
    index, vote_rec = vote_index(run.fit_embeddings, params.vote_index, x1s["val"][:2000], params.vote_neighbours,
                                 params.vote_hnsw_above, params.vote_min_recall)
    if index.kind == "hnsw":  # later stages (and the model folder) search the same index, not a rebuilt one
        index.save(out / VOTE_INDEX)
    run.vote_index = index
    second = second_source(run, params.augment, params.vote_neighbours)
    voters = run.train_votes(params.vote_neighbours)
    for name, split in splits.items():
        x1 = x1s[name]
        found, t_found = None, 0.0
        if name != "train":  # searched once here; stages 06 and 07 (and the ablations' runs) read them back
            t0 = time.perf_counter()
            found = voters.neighbours_of(x1)
            t_found = time.perf_counter() - t0 if second is voters else 0.0  # the shortlist's cost only then
            save_vote_neighbours(out / VOTE_NEIGHBOURS.format(split=name), *found, split.uids)
        t0 = time.perf_counter()
        S, I = shortlist_points(run.index, x1, params.shortlist, second, params.augment_share,
                                fit_pos if name == "train" else None, found if second is voters else None)
        secs = time.perf_counter() - t0 + t_found
        save_shortlist(out / SHORTLIST.format(split=name), S, I, split.uids)
        rows.append({"data": run.data_name, "split": name, "shortlist from": _source(params), "points": len(split.uids),
                     "shortlist": params.shortlist, "seconds": round(secs, 2), **recall_at_k(I, split.Y, ks, split.filter)})
        if name == "test":
            alone = [("index only", run.index.search(x1, params.shortlist)[1])] if params.augment != "none" else []
            alone.append((f"votes of {params.vote_neighbours} training points only",
                          voters.search(x1, params.shortlist, found=found)[1]))
            alone.append(("label centroids only", second_source(run, "centroid", params.vote_neighbours).search(x1, params.shortlist)[1]))
            for src, Ia in alone:
                rows.append({**rows[-1], "shortlist from": src, "seconds": None,
                             **recall_at_k(Ia, split.Y, ks, split.filter)})
    with atomic_write(out / SHORTLIST_PARAMS) as f:
        json.dump({**asdict(params), **vote_rec}, f, indent=2)
    table = pd.DataFrame(rows)
    write_table(table, out, "module3_shortlists", caption=f"Shortlists and their recall ({run.data_title})")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "shortlists": table.to_dict("records"), **vote_rec}
    write_metrics(out, summary, METRICS)
    return Module3Result(table, summary)
