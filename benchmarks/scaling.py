"""Benchmark: how prediction grows with the number of labels L (issue 27). The kit's own prediction path (Module II's
P-I-bag HNSW index, Module III's training-point votes, Module IV's pair scores, the fusion) on planted synthetic data
at D = 192: L labels in clusters, a bag of `--bag` descriptors per label, twice as many fit points as labels (each
with its label and one more of the same cluster), encoders excluded. Per L, in a process of its own (so that its
peak memory is its own): index build times, ms per point of each step for one query at a time on one thread (mean of
50, after 5 untimed) and for batches of 200 on every core, the fit-point votes with an exact and an HNSW index (recall
against exact), P@1 of the fused score on the planted truth, and peak memory; napkinXC PLT on TF-IDF of the labels'
planted token titles at the same L beside it up to --plt-max labels (its training grows fastest), and PECOS XR-Linear
up to --pecos-max where a Python with libpecos is found ($MUFIN_PECOS_PYTHON; --peers-only adds the peers to an
existing result). Writes runs/benchmarks/scaling.json; notebook 13_scaling plots it.

    python benchmarks/scaling.py [--sizes 10000,100000,300000,1000000] [--queries 200]
    MUFIN_PECOS_PYTHON=~/pecos-env/bin/python python benchmarks/scaling.py --peers-only --sizes 300000,1000000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

D = 192


def _unit(X):
    X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-12
    return X


def planted(L: int, bag: int, n_query: int, seed: int):
    """Label vectors around cluster centres, their bags, fit points near their label, queries with their truth."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    C = max(10, L // 50)
    centres = _unit(rng.standard_normal((C, D)).astype(np.float32))
    cl = rng.integers(0, C, L)
    Z = np.empty((L, D), np.float32)
    desc = np.empty((L * bag, D), np.float32)
    for s in range(0, L, 100_000):  # in blocks: the noise of 1M x 192 at once would double the peak
        e = min(L, s + 100_000)
        Z[s:e] = _unit(centres[cl[s:e]] + rng.standard_normal((e - s, D)).astype(np.float32) * (0.8 / np.sqrt(D)))
        for j in range(bag):
            desc[j * L + s:j * L + e] = _unit(Z[s:e] + rng.standard_normal((e - s, D)).astype(np.float32) * (0.3 / np.sqrt(D)))
    owner = np.tile(np.arange(L), bag)
    by_cluster = np.argsort(cl, kind="stable")
    starts = np.searchsorted(cl[by_cluster], np.arange(C))
    counts = np.bincount(cl, minlength=C)

    def sibling(labels):
        c = cl[labels]
        return by_cluster[starts[c] + (rng.random(len(labels)) * np.maximum(counts[c], 1)).astype(np.int64)]

    def points(n):
        lab = rng.integers(0, L, n)
        X = np.empty((n, D), np.float32)
        for s in range(0, n, 100_000):
            e = min(n, s + 100_000)
            X[s:e] = _unit(Z[lab[s:e]] + rng.standard_normal((e - s, D)).astype(np.float32) * (2.5 / np.sqrt(D)))
        return X, lab, sibling(lab)

    Xf, lf, sf = points(2 * L)
    Y = sp.csr_matrix((np.ones(4 * L, np.float32), (np.repeat(np.arange(2 * L), 2), np.stack([lf, sf], 1).ravel())),
                      shape=(2 * L, L))
    Y.data[:] = 1.0
    Xq, lq, _ = points(n_query)
    return Z, desc, owner, Xf, Y, Xq, lq, cl


def _ms(fn, n_points: int, repeat: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return 1000 * (time.perf_counter() - t) / (repeat * n_points)


def one_size(L: int, bag: int, n_query: int, shortlist: int, seed: int, plt_max: int, pecos_max: int) -> dict:
    import faiss
    import torch

    from mufin_lib.bags import BagTable
    from mufin_lib.fusion import fuse, label_side, label_side_dtype, log_popularity, pair_terms, score_pairs
    from mufin_lib.model import ModelParams, MufinEncoder
    from mufin_lib.ranker import Ranker
    from mufin_lib.retrieval import (IndexParams, LabelIndex, TrainVotes, VectorIndex, index_bytes, merge_shortlists,
                                     topk_overlap)

    out = {"L": L, "fit_points": 2 * L, "bag": bag, "D": D, "queries": n_query, "shortlist": shortlist, "seed": seed}
    t = time.perf_counter()
    Z, desc, owner, Xf, Y, Xq, lq, cl = planted(L, bag, n_query, seed)
    out["generate_s"] = round(time.perf_counter() - t, 1)
    threads = os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)
    index = LabelIndex(desc, owner, L, IndexParams(mode="bag", index="hnsw", M=32, ef_construction=100, ef_search=shortlist))
    out["label_index_build_s"] = round(index.build_seconds, 1)
    out["label_index_GB"] = round(index_bytes(index.index) / 1e9, 3)  # the P-I-bag HNSW index alone (float32)
    exact_votes = TrainVotes(Xf, Y, 20, VectorIndex(Xf, "flat"))
    hnsw_vi = VectorIndex(Xf, "hnsw", M=16, ef_construction=80, ef_search=64)
    out["vote_index_build_s"] = {"flat": round(exact_votes.index.build_seconds, 1), "hnsw": round(hnsw_vi.build_seconds, 1)}
    out["vote_index_GB"] = {"flat": round(index_bytes(exact_votes.index.index) / 1e9, 3),
                            "hnsw": round(index_bytes(hnsw_vi.index) / 1e9, 3)}
    hnsw_votes = TrainVotes(Xf, Y, 20, hnsw_vi)
    _, I_ex = exact_votes.index.search(Xq, 20)
    _, I_hn = hnsw_vi.search(Xq, 20)
    out["vote_neighbours_recall_hnsw"] = round(topk_overlap(I_hn, I_ex), 4)
    popularity = log_popularity(Y)
    # Module IV at D = 192 (its cost does not depend on its weights): label bags as pre-embeddings of width D
    mp = ModelParams(D=D, text_dim=D, image_dim=D)
    torch.manual_seed(seed)
    enc = MufinEncoder(mp).eval()
    ranker = Ranker(MufinEncoder(mp), L).eval()
    counts = np.full(L, bag - 1)
    labels = BagTable.from_arrays([str(i) for i in range(L)], desc[:L], desc[L:] if bag > 1 else np.zeros((0, D), np.float32),
                                  np.concatenate([[0], np.cumsum(counts)]), counts, np.ones(L, bool), 15)
    label_z1 = Z  # what a model folder holds ahead of time: every label's z^1
    t = time.perf_counter()
    # and Module IV's label side of every label, as Predictor keeps it (float32 up to 4 GiB, then float16)
    dtype = label_side_dtype(ranker, labels.counts)
    side = label_side(ranker, labels, np.arange(L), dtype=dtype) if dtype is not None else None
    out["label_side"] = {"s": round(time.perf_counter() - t, 1), "dtype": str(dtype).replace("torch.", ""),
                         "GB": round(side.nbytes() / 1e9, 2) if side is not None else 0.0}
    qtext = torch.from_numpy(Xq)
    rows_all = np.arange(L)  # label id = its row, made once as Predictor makes it (0.4 ms at 1M labels)

    def inputs(rows):
        return (qtext[rows], torch.ones(len(rows), dtype=torch.bool), torch.zeros(len(rows), 0, D),
                torch.zeros(len(rows), 0, dtype=torch.bool))

    def steps(rows, votes):
        """The prediction path as Predictor runs it, timed step by step (the older rank paths are timed apart, in
        older_steps: run in between, they pushed this path's weights out of the cache)."""
        x = Xq[rows]
        t0 = time.perf_counter()
        _, sl = index.search(x, shortlist)
        t1 = time.perf_counter()
        _, V = votes.search(x, shortlist)
        sl = merge_shortlists(sl, V, shortlist, shortlist // 2)
        t2 = time.perf_counter()
        with torch.no_grad():  # Module IV's label side ahead: A_C's keys and values, the classifiers
            _, r = score_pairs(ranker, inputs(rows), labels, rows_all, sl, enc, label_z1=label_z1, label_side=side,
                               point_x1=enc(*inputs(rows))[0].numpy())  # as Predictor: x^1 from retrieval
        t3 = time.perf_counter()
        e = np.where(sl >= 0, np.einsum("nd,nkd->nk", x, label_z1[np.maximum(sl, 0)]), -np.inf).astype(np.float32)
        v, p = pair_terms(votes, popularity, x, sl)
        # alpha 1: the ranker here is untrained (its cost is its weights' shape, its scores are noise)
        S = fuse(e, r, sl, 1.0, L, v + 0.1 * p)
        t4 = time.perf_counter()
        n = len(rows)
        return {"retrieve_ms": 1000 * (t1 - t0) / n, "votes_ms": 1000 * (t2 - t1) / n,
                "rank_label_side_ahead_ms": 1000 * (t3 - t2) / n, "fuse_ms": 1000 * (t4 - t3) / n}, S, sl

    def older_steps(rows, sl):
        """Module IV's step as it was before issue 27, on the same shortlists: both models encode every shortlisted
        label's bag; then z^1 of every label ahead (the embedding score a look-up), Module IV encoding the labels."""
        t0 = time.perf_counter()
        with torch.no_grad():
            score_pairs(ranker, inputs(rows), labels, rows_all, sl, enc)
        t1 = time.perf_counter()
        with torch.no_grad():
            score_pairs(ranker, inputs(rows), labels, rows_all, sl, enc, label_z1=label_z1)
        t2 = time.perf_counter()
        n = len(rows)
        return {"rank_labels_encoded_per_query_ms": 1000 * (t1 - t0) / n, "rank_z1_ahead_ms": 1000 * (t2 - t1) / n}

    parts = ("retrieve_ms", "votes_ms", "rank_label_side_ahead_ms", "fuse_ms")
    result = {}
    for votes_name, votes in (("exact", exact_votes), ("hnsw", hnsw_votes)):
        # one query at a time, one thread: the path over 55 queries, then the older rank paths over the same
        faiss.omp_set_num_threads(1)
        torch.set_num_threads(1)
        acc, warm, sls = [], [], []
        for i in range(min(n_query, 55)):
            m, _, sl = steps(np.array([i]), votes)
            sls.append(sl)
            # the first few warm up (as rank_only): the first call of a step costs several ms
            (acc if i >= 5 or n_query <= 5 else warm).append(m)
        old = [older_steps(np.array([i]), sl) for i, sl in enumerate(sls)][5 if len(sls) > 5 else 0:]
        single = {k: round(float(np.mean([a[k] for a in acc])), 3) for k in acc[0]}
        single |= {k: round(float(np.mean([a[k] for a in old])), 3) for k in old[0]}
        single["warm_up_total_ms"] = [round(sum(w[k] for k in parts), 3) for w in warm]  # untimed in the mean
        single["total_ms"] = round(sum(single[k] for k in parts), 3)
        # batches of 200, every core
        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(threads)
        b, S, sl = steps(np.arange(n_query), votes)
        b |= older_steps(np.arange(n_query), sl)
        batch = {k: round(v, 3) for k, v in b.items()}
        batch["total_ms"] = round(sum(batch[k] for k in parts), 3)
        top = np.asarray(S.argmax(1)).ravel()
        result[votes_name] = {"single_query_1_thread": single, f"batch_{n_query}_{threads}_threads": batch,
                              "P@1": round(100 * float((top == lq).mean()), 2)}
    out["mufin_path"] = result
    # Module I alone through the index (the paper's retrieval), P@1 on the same truth
    _, sl = index.search(Xq, 1)
    out["index_top1_P@1"] = round(100 * float((sl[:, 0] == lq).mean()), 2)
    out |= _peers(L, cl, lq, Y, seed, plt_max, pecos_max)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
    return out


def rank_only(L: int, bag: int, n_query: int, shortlist: int, seed: int) -> dict:
    """Module IV's step alone at L labels (no index: its cost does not depend on which labels are shortlisted): the
    label side as Predictor keeps it, and one query at a time on one thread against `shortlist` random labels."""
    import torch

    from mufin_lib.bags import BagTable
    from mufin_lib.fusion import label_side, label_side_dtype, score_pairs
    from mufin_lib.model import ModelParams, MufinEncoder
    from mufin_lib.ranker import Ranker

    rng = np.random.default_rng(seed)
    desc = _unit(rng.standard_normal((L * bag, D)).astype(np.float32))
    mp = ModelParams(D=D, text_dim=D, image_dim=D)
    torch.manual_seed(seed)
    enc, ranker = MufinEncoder(mp).eval(), Ranker(MufinEncoder(mp), L).eval()
    counts = np.full(L, bag - 1)
    labels = BagTable.from_arrays([str(i) for i in range(L)], desc[:L], desc[L:], np.concatenate([[0], np.cumsum(counts)]),
                                  counts, np.ones(L, bool), 15)
    t = time.perf_counter()
    dtype = label_side_dtype(ranker, labels.counts)
    side = label_side(ranker, labels, np.arange(L), dtype=dtype) if dtype is not None else None
    out = {"L": L, "bag": bag, "shortlist": shortlist, "label_side": {"s": round(time.perf_counter() - t, 1),
           "dtype": str(dtype).replace("torch.", ""), "GB": round(side.nbytes() / 1e9, 2) if side is not None else 0.0}}
    z1, rows_all = desc[:L], np.arange(L)
    torch.set_num_threads(1)
    ms = []
    with torch.no_grad():
        for i in range(n_query + 5):
            q = torch.from_numpy(desc[i:i + 1])
            inp = (q, torch.ones(1, dtype=torch.bool), torch.zeros(1, 0, D), torch.zeros(1, 0, dtype=torch.bool))
            sl = rng.choice(L, (1, shortlist), replace=False)
            x1 = enc(*inp)[0].numpy()  # retrieval's x^1, outside the step as in Predictor
            t = time.perf_counter()
            score_pairs(ranker, inp, labels, rows_all, sl, enc, z1, True, side, point_x1=x1)
            if i >= 5:  # the first few warm up
                ms.append(1000 * (time.perf_counter() - t))
    out["rank_ms_single_query_1_thread"] = round(float(np.mean(ms)), 3)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
    return out


def _tfidf(L, cl, lq, Y, seed):
    """TF-IDF of planted token titles for the peers: a label's title names its cluster and one of 8 sub-words; a
    point's text is its first label's title with one word dropped at random. (train X, test X)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(seed + 1)
    sub = rng.integers(0, 8, L)
    first = Y.indices[Y.indptr[:-1]]  # one label of each point (a point whose two labels coincide has one)

    def text(labels):
        words = [f"c{cl[l]} s{cl[l]}x{sub[l]} t{l % 97}" for l in labels]
        return [" ".join(w.split()[j] for j in range(3) if j != k) for w, k in zip(words, rng.integers(0, 4, len(words)))]

    vec = TfidfVectorizer(token_pattern=r"\S+", dtype=np.float32)
    Xtr = vec.fit_transform(text(first))
    return Xtr, vec.transform(text(lq))


def _plt(Xtr, Xte, lq, Y, seed) -> dict:
    """napkinXC PLT on the peers' TF-IDF, one thread."""
    import tempfile

    from napkinxc.models import PLT

    from mufin_lib.baselines import _labels_lists

    with tempfile.TemporaryDirectory() as d:
        m = PLT(d, threads=1, seed=seed)
        t = time.perf_counter()
        m.fit(Xtr, _labels_lists(Y))
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        pred = m.predict(Xte, top_k=1)
        ms = 1000 * (time.perf_counter() - t) / Xte.shape[0]  # one thread, all queries in one call
    top = np.array([p[0] if p else -1 for p in pred])
    return {"train_s": round(train_s, 1), "predict_1_thread_ms": round(ms, 3), "P@1": round(100 * float((top == lq).mean()), 2)}


def _pecos(Xtr, Xte, lq, Y, python: str) -> dict:
    """PECOS XR-Linear (its defaults) on the same TF-IDF, in its own Python; prediction on one thread, all queries in
    one call, as PLT's (timed there, around its predict alone)."""
    from mufin_lib.baselines import pecos_scores

    P, train_s, predict_s = pecos_scores(Xtr, Y, Xte, 1, python, threads=1)
    top = np.asarray(P.argmax(1)).ravel()
    top[np.diff(P.indptr) == 0] = -1
    return {"train_s": round(train_s, 1), "predict_1_thread_ms": round(1000 * predict_s / Xte.shape[0], 3),
            "P@1": round(100 * float((top == lq).mean()), 2)}


def _peers(L, cl, lq, Y, seed, plt_max: int, pecos_max: int) -> dict:
    """PLT up to plt_max labels, PECOS up to pecos_max (where a Python with libpecos is found), on the same TF-IDF."""
    from mufin_lib.baselines import pecos_python

    out = {}
    if L > max(plt_max, pecos_max):
        return out
    Xtr, Xte = _tfidf(L, cl, lq, Y, seed)
    if L <= plt_max:
        out["plt"] = _plt(Xtr, Xte, lq, Y, seed)
    if L <= pecos_max:
        py = pecos_python()  # $MUFIN_PECOS_PYTHON or this Python, where one imports pecos
        out["pecos"] = _pecos(Xtr, Xte, lq, Y, py) if py else "not installed (MUFIN_PECOS_PYTHON: a Python with libpecos)"
    return out


def peers_only(path: Path, L: int, bag: int, n_query: int, seed: int, plt_max: int, pecos_max: int) -> None:
    """The peers alone at L, on the same planted data (the same seed, bag and queries), added to that L's entry of an
    existing scaling.json with the commit that measured them (`peers_git`): a peer installed after the MUFIN path ran."""
    from mufin_lib.paths import atomic_write
    from mufin_lib.run import git_commit

    rec = json.loads(path.read_text())
    entry = next((r for r in rec["results"] if r.get("L") == L and "error" not in r), None)
    if entry is None or (entry["bag"], entry["queries"], entry.get("seed", 0)) != (bag, n_query, seed):
        raise SystemExit(f"{path}: no entry at L = {L} with bag {bag}, {n_query} queries and seed {seed} to add the peers to")
    _, _, _, _, Y, _, lq, cl = planted(L, bag, n_query, seed)
    got = _peers(L, cl, lq, Y, seed, plt_max, pecos_max)
    entry |= got | {"peers_git": git_commit(),
                    "peers_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}
    with atomic_write(path) as f:
        json.dump(rec, f, indent=2)
    print(json.dumps({"L": L, **got}))


def _provenance() -> dict:
    """The commit and the machine a result came from; cores_used: the cores this process may run on (taskset pins it
    below cpu_count)."""
    from mufin_lib.run import git_commit

    return {"git": git_commit(), "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                             "cores_used": len(os.sched_getaffinity(0))}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,300000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--shortlist", type=int, default=100)
    ap.add_argument("--bag", type=int, default=2, help="descriptors per label (H&M and MANGO: a title and a photo)")
    ap.add_argument("--plt-max", type=int, default=100000)
    ap.add_argument("--pecos-max", type=int, default=1000000, help="PECOS trains far faster than PLT at large L (REPRODUCE.md gives both times)")
    ap.add_argument("--peers-only", action="store_true",
                    help="the peers alone, added to each size's entry of an existing runs/benchmarks/scaling.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--rank-only", action="store_true",
                    help="Module IV's step alone at each size (no index): runs/benchmarks/scaling_rank.json")
    a = ap.parse_args()
    if a.rank_only:
        from mufin_lib.paths import RUNS_DIR, atomic_write

        res = [rank_only(int(L), a.bag, 50, 150, a.seed) for L in a.sizes.split(",")]
        print(json.dumps(res, indent=1))
        with atomic_write(RUNS_DIR / "benchmarks" / "scaling_rank.json") as f:
            json.dump({"benchmark": "scaling_rank", **_provenance(), "results": res}, f, indent=1)
        return
    if a.one:
        print(json.dumps(one_size(a.one, a.bag, a.queries, a.shortlist, a.seed, a.plt_max, a.pecos_max)))
        return
    from mufin_lib.paths import RUNS_DIR, atomic_write

    if a.peers_only:
        for L in [int(x) for x in a.sizes.split(",")]:
            peers_only(RUNS_DIR / "benchmarks" / "scaling.json", L, a.bag, a.queries, a.seed, a.plt_max, a.pecos_max)
        return

    results = []
    for L in [int(x) for x in a.sizes.split(",")]:
        t = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, "--one", str(L), "--queries", str(a.queries), "--shortlist",
                            str(a.shortlist), "--bag", str(a.bag), "--plt-max", str(a.plt_max), "--pecos-max", str(a.pecos_max),
                            "--seed", str(a.seed)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            results.append({"L": L, "error": r.stderr[-2000:]})
        else:
            results.append(json.loads(r.stdout.strip().splitlines()[-1]) | {"wall_s": round(time.perf_counter() - t, 1)})
        print(json.dumps(results[-1])[:600], flush=True)
        import torch
        head = _provenance()
        head["machine"] |= {"cuda": torch.cuda.is_available(), "gpu": None}
        record = {"benchmark": "scaling", **head, "encoders": "excluded", "results": results}
        with atomic_write(RUNS_DIR / "benchmarks" / "scaling.json") as f:  # after each size: a killed run keeps the rest
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
