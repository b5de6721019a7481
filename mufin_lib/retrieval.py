"""Module II (spec §5): nearest-label search over the label vectors of Module I.

- P-I-bag (the paper's default): every descriptor vector of every label (the rows of Z_l^1) plus the label
  vector z_l^1 are indexed; a label's score is the max over its vectors' similarities.
- P-I-vec (the authors' current code): z_l^1 alone.
Indexes: HNSW (faiss, inner product on unit vectors = cosine; M, efConstruction, efSearch as parameters)
or exact flat search, for small catalogues and for checking HNSW. faiss on the GPU when there is one.
An index is saved with the run and loaded again without rebuilding.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .config import choice, ranged
from .paths import atomic_path, atomic_write


@dataclass
class RetrievalParams:
    mode: str = choice("bag", "vec")  # bag (P-I-bag, paper) | vec (P-I-vec, authors' code)
    index: str = choice("hnsw", "flat")  # hnsw | flat
    M: int = ranged(32, 2)  # authors' code: 100
    ef_construction: int = ranged(200, 1)  # authors' code: 300
    ef_search: int = ranged(300, 1)
    shortlist: int = ranged(100, 1)  # labels kept per point (authors' code: 300)
    gpu: bool = True  # use faiss GPU when available (flat search; HNSW stays on the CPU)
    compare: bool = True  # stage 03 also measures P-I-vec against P-I-bag and HNSW against exact search
    # Module III, kit option (the XC family's shortlists through training points, as ECLARE/NGAME): part of each
    # shortlist from the labels of the point's nearest training points by Module I's embedding (similarity-weighted
    # votes); "centroid": from the labels whose training points' mean embedding is nearest the point (DECAF/ECLARE's
    # label centroids). "none": the index alone (the paper)
    augment: str = choice("none", "knn", "centroid")
    augment_neighbours: int = ranged(20, 1)  # training points that vote
    augment_share: float = ranged(0.5, 0, 1)  # the share of the shortlist the augmentation may fill (interleaved with the index)


def exact_search(queries: np.ndarray, keys: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k keys by inner product for each query: (scores, indices), both (n_queries x k)."""
    import faiss

    keys = np.ascontiguousarray(keys, dtype=np.float32)
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    k = min(k, keys.shape[0])
    S, I = [], []
    for s in range(0, len(queries), block):
        sc, ix = index.search(np.ascontiguousarray(queries[s:s + block], dtype=np.float32), k)
        S.append(sc); I.append(ix)
    return np.concatenate(S), np.concatenate(I)


def _maybe_gpu(index, use: bool):
    import faiss
    if use and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


class LabelIndex:
    """ANN index over label vectors; `owner[j]` is the label of indexed vector j."""

    def __init__(self, vectors: np.ndarray, owner: np.ndarray, n_labels: int, params: RetrievalParams):
        import faiss

        self.params, self.n_labels = params, n_labels
        self.owner = np.asarray(owner, np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        t = time.perf_counter()
        if params.index == "hnsw":
            self.index = faiss.IndexHNSWFlat(vectors.shape[1], params.M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = params.ef_construction
        elif params.index == "flat":
            self.index = _maybe_gpu(faiss.IndexFlatIP(vectors.shape[1]), params.gpu)
        else:
            raise ValueError(f"index '{params.index}': expected hnsw or flat")
        self.index.add(vectors)
        self.build_seconds = time.perf_counter() - t
        self.vectors_per_label = len(self.owner) / max(1, n_labels)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k LABELS per query (max over a label's vectors): (scores, labels), -1 where fewer were found."""
        if self.params.index == "hnsw":
            self.index.hnsw.efSearch = max(self.params.ef_search, k)
        # enough vectors to cover k distinct labels for most queries
        kv = int(min(self.index.ntotal, max(k, np.ceil(k * min(self.vectors_per_label, 4.0)))))
        S, I = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), kv)
        n = len(queries)
        out_s = np.full((n, k), -np.inf, np.float32)
        out_l = np.full((n, k), -1, np.int64)
        lab = np.where(I >= 0, self.owner[np.clip(I, 0, None)], -1)
        for i in range(n):
            seen, c = set(), 0
            for s, l in zip(S[i], lab[i]):  # results come sorted: the first hit of a label is its max
                if l < 0 or l in seen:
                    continue
                seen.add(l)
                out_s[i, c], out_l[i, c] = s, l
                c += 1
                if c == k:
                    break
        return out_s, out_l

    def save(self, folder: str | Path) -> None:
        import faiss

        folder = Path(folder)
        cpu = faiss.index_gpu_to_cpu(self.index) if hasattr(faiss, "index_gpu_to_cpu") and self.params.index == "flat" \
            and faiss.get_num_gpus() > 0 else self.index
        with atomic_path(folder / "index.faiss") as tmp:
            faiss.write_index(cpu, str(tmp))
        with atomic_path(folder / "owner.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.owner)
        with atomic_write(folder / "index.json") as f:
            json.dump({"params": asdict(self.params), "n_labels": self.n_labels, "n_vectors": int(len(self.owner)),
                       "build_seconds": self.build_seconds}, f, indent=2)

    @classmethod
    def load(cls, folder: str | Path) -> "LabelIndex":
        import faiss

        folder = Path(folder)
        if not (folder / "index.json").exists():
            raise FileNotFoundError(f"{folder}/index.json: missing; run notebook 03_module2_retrieval first")
        meta = json.loads((folder / "index.json").read_text())
        self = cls.__new__(cls)
        self.params = RetrievalParams(**meta["params"])
        self.n_labels = meta["n_labels"]
        self.owner = np.load(folder / "owner.npy")
        self.index = faiss.read_index(str(folder / "index.faiss"))
        if self.params.index == "flat":
            self.index = _maybe_gpu(self.index, self.params.gpu)
        self.build_seconds = meta["build_seconds"]
        self.vectors_per_label = len(self.owner) / max(1, self.n_labels)
        return self


def label_vectors(z1: np.ndarray, desc: np.ndarray | None, desc_owner: np.ndarray | None, mode: str):
    """(vectors, owner) to index: z_l^1 alone (vec) or z_l^1 plus every descriptor row (bag)."""
    L = len(z1)
    if mode == "vec":
        return z1, np.arange(L)
    if mode != "bag":
        raise ValueError(f"mode '{mode}': expected bag (P-I-bag) or vec (P-I-vec)")
    return np.vstack([z1, desc]), np.concatenate([np.arange(L), desc_owner])


def shortlist_recall(labels: np.ndarray, Y, ks=(10, 50, 100, 200, 300), filt: np.ndarray | None = None) -> dict:
    """R@k of shortlists (n x K label ids, best first) against truth Y, filter pairs removed from both."""
    import scipy.sparse as sp

    from .metrics import _drop

    Y = _drop(sp.csr_matrix(Y) > 0, filt)
    fset = {(int(r), int(c)) for r, c in (filt if filt is not None else [])}
    n_pos = Y.getnnz(1)
    out = {}
    for k in ks:
        if k > labels.shape[1]:
            continue
        found = np.zeros(len(labels))
        for i in range(len(labels)):
            if n_pos[i] == 0:
                continue
            # filtered pairs leave the predictions first, then the top k count
            cand = [int(l) for l in labels[i] if l >= 0 and (i, int(l)) not in fset][:k]
            pos = set(Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist())
            found[i] = len(pos.intersection(cand)) / n_pos[i]
        has = n_pos > 0
        out[f"R@{k}"] = round(float(100 * found[has].mean()) if has.any() else 0.0, 4)
    return out


def topk_overlap(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top-k labels (-1: empty slot) that the approximate search also found."""
    shares = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / len(b[b >= 0])
              for a, b in zip(approx, exact) if (b >= 0).any()]
    return float(np.mean(shares)) if shares else float("nan")


def save_shortlist(path: str | Path, scores: np.ndarray, labels: np.ndarray, uids: list[str]) -> None:
    """Module III: a split's shortlists (labels best first, with scores), cached on disk."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, scores=scores.astype(np.float32), labels=labels.astype(np.int64), uids=np.array(uids))


def load_shortlist(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; run notebook 04_module3_shortlists first")
    z = np.load(path)
    return z["scores"], z["labels"], z["uids"].tolist()


class TrainVotes:
    """The labels of a point's nearest training points (Module I's embedding, exact search), each label scored by the
    sum of the similarities of the neighbours that have it. A training point never votes for itself."""

    def __init__(self, keys: np.ndarray, Y_fit: sp.csr_matrix, neighbours: int = 20):
        self.keys = np.ascontiguousarray(keys, np.float32)
        self.Y = sp.csr_matrix(Y_fit > 0, dtype=np.float32)
        self.neighbours = neighbours

    def votes(self, queries: np.ndarray, exclude: np.ndarray | None = None) -> sp.csr_matrix:
        """n x labels: each label's votes (the summed similarities of the neighbours that have it); `exclude[i]` is
        query i's own row among the keys (-1: none)."""
        n_nb = min(self.neighbours + 1, len(self.keys))
        S, N = exact_search(queries, self.keys, n_nb)
        S = np.maximum(S, 0) + 1e-6
        if exclude is not None:
            S[N == np.asarray(exclude)[:, None]] = 0.0
        S[:, self.neighbours:] *= (S[:, :self.neighbours] == 0).any(1, keepdims=True)  # the extra one: only after a self
        W = sp.csr_matrix((S.ravel(), N.ravel(), np.arange(0, S.size + 1, S.shape[1])), shape=(len(queries), len(self.keys)))
        V = (W @ self.Y).tocsr()
        V.eliminate_zeros()
        return V

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(votes, labels), n x k, best first, -1 where fewer labels got a vote."""
        V = self.votes(queries, exclude)
        out_s, out_i = np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64)
        for i in range(V.shape[0]):
            a, b = V.indptr[i], V.indptr[i + 1]
            order = np.lexsort((V.indices[a:b], -V.data[a:b]))[:k]
            out_s[i, :len(order)], out_i[i, :len(order)] = V.data[a:b][order], V.indices[a:b][order]
        return out_s, out_i

    def pair_votes(self, queries: np.ndarray, shortlist: np.ndarray, block: int = 8192) -> np.ndarray:
        """Each shortlisted (query, label)'s votes divided by the number of voters (0..1; 0 where none or no label)."""
        out = np.zeros(shortlist.shape, np.float32)
        for s in range(0, len(shortlist), block):  # blocks of queries bound the (query, label) index arrays
            V, sl = self.votes(queries[s:s + block]), shortlist[s:s + block]
            rows = np.repeat(np.arange(len(sl)), sl.shape[1])
            got = np.asarray(V[rows, np.maximum(sl, 0).ravel()]).ravel().reshape(sl.shape)
            out[s:s + block] = np.where(sl >= 0, got / self.neighbours, 0.0)
        return out


class LabelCentroids:
    """Label centroids: the normalised mean Module I embedding of each label's training points (labels with
    none are never returned), searched exactly by inner product. A training point's own shortlist is not cleared of
    its own contribution (the votes are): its positives are a little easier to find in training than in test."""

    def __init__(self, keys: np.ndarray, Y_fit: sp.csr_matrix):
        Y = sp.csr_matrix(Y_fit > 0, dtype=np.float32).T.tocsr()  # labels x points
        C = np.asarray(Y @ np.asarray(keys, np.float32))
        self.labels = np.flatnonzero(Y.getnnz(1) > 0)
        C = C[self.labels]
        self.centroids = np.ascontiguousarray(C / (np.linalg.norm(C, axis=1, keepdims=True) + 1e-12), np.float32)

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        S, I = exact_search(queries, self.centroids, min(k, len(self.labels)))
        I = np.where(I >= 0, self.labels[np.maximum(I, 0)], -1)
        if I.shape[1] < k:
            pad = k - I.shape[1]
            S, I = np.pad(S, ((0, 0), (0, pad)), constant_values=-np.inf), np.pad(I, ((0, 0), (0, pad)), constant_values=-1)
        return S, I


def merge_shortlists(first: np.ndarray, second: np.ndarray, size: int, second_max: int) -> np.ndarray:
    """Per row, labels from `first` and `second` (best first, -1 empty) interleaved without repeats: up to
    `second_max` from `second`, the rest from `first`, `size` in all."""
    out = np.full((len(first), size), -1, np.int64)
    for r in range(len(first)):
        a = [int(x) for x in first[r] if x >= 0]
        b = [int(x) for x in second[r] if x >= 0]
        seen, row, ia, ib, nb = set(), [], 0, 0, 0
        while len(row) < size and (ia < len(a) or ib < len(b)):
            take_b = ib < len(b) and nb < second_max and (len(row) % 2 == 1 or ia >= len(a))
            if take_b:
                x = b[ib]; ib += 1
                if x not in seen:
                    nb += 1
            elif ia < len(a):
                x = a[ia]; ia += 1
            else:
                break
            if x not in seen:
                seen.add(x); row.append(x)
        out[r, :len(row)] = row
    return out


def augmentation(run, params: RetrievalParams):
    """The shortlist source beside the index that params.augment names (TrainVotes or LabelCentroids)."""
    if params.augment == "knn":
        return run.train_votes(params.augment_neighbours)
    if params.augment == "centroid":
        return run.label_centroids()
    raise ValueError(f"augment '{params.augment}': expected none, knn or centroid")


def shortlist_points(run, x1: np.ndarray, params: RetrievalParams, exclude: np.ndarray | None = None):
    """Module III for points embedded by Module I (x1): (scores, labels) of their shortlists, from the run's index
    and, with params.augment="knn", the votes of training points. Scores are the order (best highest): the ranker
    and the fusion score every shortlisted label themselves."""
    S, I = run.index.search(x1, params.shortlist)
    if params.augment == "none":
        return S, I
    _, V = augmentation(run, params).search(x1, params.shortlist, exclude)
    I = merge_shortlists(I, V, params.shortlist, int(round(params.shortlist * params.augment_share)))
    return np.where(I >= 0, params.shortlist - np.arange(params.shortlist)[None, :], -np.inf).astype(np.float32), I


# ---- stages 03 and 04 -------------------------------------------------------------------------------

@dataclass
class RetrievalResult:
    table: "object"  # pandas DataFrame: one row per (mode, index): vectors, build time, ms/query, P@k, R@k
    recall_curves: dict  # "P-I-bag / hnsw" -> {"R@k": ...}
    hnsw_vs_exact_overlap: float | None  # share of the exact top-k that HNSW finds (chosen mode)
    table4: "object | None"  # P-I-vec vs P-I-bag beside the paper's deltas (Table 4), when both were built
    index: LabelIndex  # the chosen index, saved under module2/index


def retrieval_stage(run, params: RetrievalParams) -> RetrievalResult:
    """Stage 03: index the labels by the Module I model (P-I-bag or P-I-vec; HNSW or exact), measure test recall
    and P@k after Module I alone (and, with params.compare, the other modes and indexes), save the chosen index."""
    import pandas as pd

    from .bags import embed_bags, embed_rows
    from .metrics import evaluate, topk_to_csr
    from .report import read_paper_table

    ds, stage, test = run.dataset, run.stage("module2"), run.split("test")
    z1, desc, owner = embed_bags(run.module1, run.bags, run.label_rows)
    x_test = embed_rows(run.module1, run.bags, run.bags.rows_of(test.uids))
    ks = [k for k in (1, 5, 10, 20, 50, 100, 200, 300) if k <= params.shortlist]
    inv_p = run.inv_propensity()
    chosen = (params.mode, params.index)
    todo = [chosen] + ([(m, i) for m in ("bag", "vec") for i in ("hnsw", "flat") if (m, i) != chosen]
                       if params.compare else [])
    rows, curves, indexes, found = [], {}, {}, {}
    for m, i in todo:
        vecs, own = label_vectors(z1, desc, owner, m)
        idx = LabelIndex(vecs, own, ds.num_labels, replace(params, mode=m, index=i))
        t0 = time.perf_counter()
        S, I = idx.search(x_test, params.shortlist)
        ms = 1000 * (time.perf_counter() - t0) / max(1, len(x_test))
        rec = shortlist_recall(I, test.Y, ks, test.filter)
        met = evaluate(topk_to_csr(I, S, ds.num_labels), test.Y, inv_p, test.filter)
        name = f"P-I-{m} / {i}"
        curves[name], indexes[(m, i)], found[(m, i)] = rec, idx, I
        rows.append({"data": run.data_name, "retrieval": name, "vectors": len(vecs),
                     "build_s": round(idx.build_seconds, 2), "ms_per_query": round(ms, 3),
                     **{k: met[k] for k in ("P@1", "P@3", "P@5", "PSP@5")}, **rec})
    table = pd.DataFrame(rows)
    overlap = None
    if (params.mode, "hnsw") in found and (params.mode, "flat") in found:
        overlap = topk_overlap(found[(params.mode, "hnsw")], found[(params.mode, "flat")])
    t4 = None
    if ("bag", params.index) in indexes and ("vec", params.index) in indexes:
        try:  # the paper's numbers, as data (../shared/paper_tables); without them the paper's columns stay empty
            paper = read_paper_table("table4_ablations.csv")
            pv = paper[paper.variant == "MUFIN-P-I-vec"].iloc[0]
        except FileNotFoundError as e:
            pv = {"delta_p1_pct": None, "delta_p5_pct": None, "note": f"paper table not found: {e}"}
        by = table.set_index("retrieval")
        b, v = by.loc[f"P-I-bag / {params.index}"], by.loc[f"P-I-vec / {params.index}"]
        t4 = pd.DataFrame([{"data": run.data_name, "variant": "P-I-vec vs P-I-bag (after Module I)",
                            "ours_P@1_bag": b["P@1"], "ours_P@1_vec": v["P@1"],
                            "ours_delta_P@1": round(v["P@1"] - b["P@1"], 2), "ours_delta_P@5": round(v["P@5"] - b["P@5"], 2),
                            "paper_delta_P@1_pct": pv["delta_p1_pct"], "paper_delta_P@5_pct": pv["delta_p5_pct"],
                            "paper_note": pv["note"]}])
    indexes[chosen].save(stage / "index")  # stages 04 and predict load it without rebuilding
    return RetrievalResult(table, curves, overlap, t4, indexes[chosen])


def shortlist_stage(run, params: RetrievalParams):
    """Stage 04 (Module III): every train, validation and test point's shortlist from the saved index, saved
    under module3/shortlist_<split>.npz; returns their recall (a pandas DataFrame, one row per split)."""
    import pandas as pd

    from .bags import embed_rows

    stage, rows = run.stage("module3"), []
    fit_pos = np.full(run.dataset.Y["train"].shape[0], -1)
    fit_pos[run.carve[0]] = np.arange(len(run.carve[0]))  # a training point's own row among the voters
    ks = [k for k in (10, 50, 100, 200, 300) if k <= params.shortlist]
    for name in ("train", "val", "test"):
        split = run.split(name)
        x1 = embed_rows(run.module1, run.bags, run.bags.rows_of(split.uids))
        t0 = time.perf_counter()
        S, I = shortlist_points(run, x1, params, fit_pos if name == "train" else None)
        secs = time.perf_counter() - t0
        save_shortlist(stage / f"shortlist_{name}.npz", S, I, split.uids)
        rows.append({"data": run.data_name, "split": name, "shortlist from": _source(params), "points": len(split.uids),
                     "shortlist": params.shortlist, "seconds": round(secs, 2), **shortlist_recall(I, split.Y, ks, split.filter)})
        if name == "test":  # each source alone, for comparison: the index, training-point votes, label centroids
            _, I0 = run.index.search(x1, params.shortlist)
            alone = [("index only", I0)] if params.augment != "none" else []
            for aug, src in (("knn", f"votes of {params.augment_neighbours} training points only"),
                             ("centroid", "label centroids only")):
                alone.append((src, augmentation(run, replace(params, augment=aug)).search(x1, params.shortlist)[1]))
            for src, Ia in alone:
                rows.append({**rows[-1], "shortlist from": src, "seconds": None,
                             **shortlist_recall(Ia, split.Y, ks, split.filter)})
    with atomic_write(stage / "shortlist.json") as f:  # how the shortlists were made: `mufin predict` makes them so
        json.dump(asdict(params), f, indent=2)
    return pd.DataFrame(rows)


def _source(params: RetrievalParams) -> str:
    if params.augment == "none":
        return "index"
    what = f"votes of {params.augment_neighbours} training points" if params.augment == "knn" else "label centroids"
    return f"index + {what} (up to {params.augment_share:.0%})"
