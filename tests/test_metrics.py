"""Metrics on hand-computed cases (the napkinXC cross-check comes with Module IV's metrics issue)."""
import numpy as np
import pytest
import scipy.sparse as sp

from mufin_lib.metrics import evaluate, inv_propensity, recall_at_k, topk_from_scores


def test_hand_computed_precision_ndcg_and_filter():
    Y = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]], np.float32))
    S = sp.csr_matrix(np.array([[0.9, 0.8, 0.1, 0, 0], [0.2, 0.1, 0.9, 0, 0], [0, 0, 0, 0.5, 0]], np.float32))
    m = evaluate(S, Y, ks=(1, 3))
    assert m["P@1"] == round(100 * 2 / 3, 4)  # points 0 and 2 hit at rank 1
    assert m["P@3"] == round(100 * (2 + 1 + 1) / 9, 4)  # point 2: one prediction, a hit
    d = 1 / np.log2([2, 3, 4])
    nd0 = (d[0] + d[2]) / (d[0] + d[1])
    nd1 = d[2] / d[0]
    assert abs(m["nDCG@3"] - 100 * (nd0 + nd1 + 1) / 3) < 1e-3
    # filtering (2, 3) removes point 2's only positive AND prediction: it still counts, with zero
    m2 = evaluate(S, Y, filt=np.array([[2, 3]]), ks=(1,))
    assert m2["P@1"] == round(100 * 1 / 3, 4)
    m3 = evaluate(S, Y, filt=np.array([[0, 0]]), ks=(1,))
    assert m3["P@1"] == round(100 * 1 / 3, 4)  # point 0's top (label 0) removed: label 1, a miss


def test_propensity_formula_and_psp_normalisation():
    Ytr = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [1, 0, 0]], np.float32))
    ip = inv_propensity(Ytr, 0.55, 1.5)
    C = (np.log(4) - 1) * (1.5 + 1) ** 0.55
    assert np.allclose(ip, 1 + C * (np.array([4, 1, 1]) + 1.5) ** -0.55)
    Y = sp.csr_matrix(np.array([[1, 1, 0]], np.float32))
    perfect = evaluate(sp.csr_matrix(np.array([[0.1, 0.9, 0]])), Y, ip, ks=(1,))
    assert perfect["PSP@1"] == 100.0  # the rarer label first is the best achievable
    worse = evaluate(sp.csr_matrix(np.array([[0.9, 0.1, 0]])), Y, ip, ks=(1,))
    assert 0 < worse["PSP@1"] < 100 and worse["P@1"] == 100.0


def test_recall():
    Y = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 0]], np.float32))
    S = sp.csr_matrix(np.array([[0.9, 0.0, 0.8, 0.1], [1, 0, 0, 0]], np.float32))
    r = recall_at_k(topk_from_scores(S, 4), Y, ks=(1, 2, 4), over="positive")
    assert r == {"R@1": 50.0, "R@2": 50.0, "R@4": 50.0}  # label 1 has score 0: not in the sparse shortlist
    # the field's way (pyxclib, napkinXC): the point with no positive counts 0
    assert recall_at_k(topk_from_scores(S, 4), Y, ks=(1, 2, 4)) == {"R@1": 25.0, "R@2": 25.0, "R@4": 25.0}


def test_every_metric_equals_napkinxc_on_random_data():
    import napkinxc.metrics as nxc

    rng = np.random.default_rng(0)
    n, L = 300, 60
    Y = sp.csr_matrix((rng.random((n, L)) < 0.05).astype(np.float32))
    Y = sp.csr_matrix(Y.multiply((np.arange(n) % 25 != 0)[:, None]))  # points without a positive still count
    Y.eliminate_zeros()  # napkinXC takes stored zeros for labels
    S = sp.csr_matrix(rng.random((n, L)).astype(np.float32) + 0.01)  # every label scored, no ties
    Ytr = sp.csr_matrix((rng.random((500, L)) < 0.08).astype(np.float32))
    ip = inv_propensity(Ytr, 0.6, 2.6)
    assert np.allclose(ip, nxc.Jain_et_al_inverse_propensity(Ytr, 0.6, 2.6))
    ours = evaluate(S, Y, ip)
    ref = {"P": nxc.precision_at_k(Y, S, 5), "nDCG": nxc.ndcg_at_k(Y, S, 5),
           "PSP": nxc.psprecision_at_k(Y, S, ip, 5), "PSnDCG": nxc.psndcg_at_k(Y, S, ip, 5)}
    for name, vals in ref.items():
        for k in (1, 3, 5):
            assert abs(ours[f"{name}@{k}"] / 100 - vals[k - 1]) < 1e-6, (name, k, ours[f"{name}@{k}"], vals[k - 1])
    rec = recall_at_k(topk_from_scores(S, 5), Y, ks=(1, 3, 5))
    ref_r = nxc.recall_at_k(Y, S, 5)
    has = Y.getnnz(1) > 0
    pos = recall_at_k(topk_from_scores(S, 5), Y, ks=(1, 3, 5), over="positive")
    for k in (1, 3, 5):  # averaged over all points (0 for those without a positive), as napkinXC
        assert abs(rec[f"R@{k}"] - 100 * ref_r[k - 1]) < 1e-2
        assert abs(pos[f"R@{k}"] * has.mean() - rec[f"R@{k}"]) < 1e-2


def test_label_index_bag_takes_the_max_over_a_labels_vectors(tmp_path):
    from mufin_lib.retrieval import IndexParams, LabelIndex, label_vectors

    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(50, 8)).astype(np.float32)
    z1 /= np.linalg.norm(z1, axis=1, keepdims=True)
    desc = np.eye(8, dtype=np.float32)[:3]  # three descriptor vectors, owned by label 7
    q = np.eye(8, dtype=np.float32)[[1]]  # a query equal to label 7's second descriptor
    for index in ("flat", "hnsw"):
        p = IndexParams(mode="bag", index=index, M=8, ef_construction=40, ef_search=40)
        vecs, owner = label_vectors(z1, desc, np.array([7, 7, 7]), "bag")
        idx = LabelIndex(vecs, owner, 50, p)
        s, l = idx.search(q, 5)
        assert l[0, 0] == 7 and abs(s[0, 0] - 1.0) < 1e-5
        assert len(set(l[0])) == 5  # distinct labels
        idx.save(tmp_path / index)
        s2, l2 = LabelIndex.load(tmp_path / index).search(q, 5)
        assert np.array_equal(l, l2) and np.allclose(s, s2)
    vecs, owner = label_vectors(z1, desc, np.array([7, 7, 7]), "vec")
    s, l = LabelIndex(vecs, owner, 50, IndexParams(mode="vec", index="flat")).search(q, 1)
    assert s[0, 0] < 0.999  # without the descriptors, no exact match


def test_shortlist_recall_with_filter():
    shortlist_recall = recall_at_k

    Y = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]], np.float32))
    labels = np.array([[0, 2, 3], [2, -1, -1]])
    assert shortlist_recall(labels, Y, ks=(1, 3)) == {"R@1": 75.0, "R@3": 75.0}
    # filtering (0, 1) removes that positive: point 0 is then fully recalled
    assert shortlist_recall(labels, Y, ks=(1,), filt=np.array([[0, 1]])) == {"R@1": 100.0}
    # a filtered prediction (the point's own product) does not take a place in the top k
    assert shortlist_recall(np.array([[3, 0, 2], [1, 2, -1]]), Y, ks=(1,), filt=np.array([[0, 3], [1, 1]])) == {"R@1": 75.0}
    # a point whose only positive is filtered has none left: it counts 0 over all points, nothing over positives
    assert shortlist_recall(labels, Y, ks=(1,), filt=np.array([[1, 2]])) == {"R@1": 25.0}
    assert shortlist_recall(labels, Y, ks=(1,), filt=np.array([[1, 2]]), over="positive") == {"R@1": 50.0}


def test_topk_overlap():
    from mufin_lib.retrieval import topk_overlap

    exact = np.array([[0, 1, 2, 3], [4, 5, -1, -1], [-1, -1, -1, -1]])
    approx = np.array([[3, 2, 1, 9], [5, 7, -1, -1], [1, 2, 3, 4]])
    assert topk_overlap(approx, exact) == np.mean([3 / 4, 1 / 2])  # a row with no exact label does not count


def test_read_benchmarks_and_plots(tmp_path):
    import json

    import matplotlib
    matplotlib.use("Agg")
    from mufin_lib import plots
    from mufin_lib.report import read_benchmarks

    res = [{"method": m, "size": n, "records_per_s": 1000.0 * n ** 0.1, "peak_rss_mb": n / 1000} for m in ("mufin", "peer")
           for n in (10, 100)]
    (tmp_path / "curation_throughput.json").write_text(json.dumps({"benchmark": "curation_throughput", "results": res}))
    got = read_benchmarks(tmp_path)
    assert list(got) == ["curation_throughput"] and len(got["curation_throughput"]["results"]) == 4
    fig = plots.curation_benchmark(res)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]  # ours and the peer on both panels
    fig = plots.throughput_bars([{"encoders": "frozen", "points_per_s": 10.0}, {"encoders": "tuned", "points_per_s": 2.0}],
                                ("encoders",), "points_per_s")
    assert len(fig.axes[0].patches) == 2
    (tmp_path / "notes.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="notes.json: expected a benchmark result"):
        read_benchmarks(tmp_path)


def test_ranker_variants_table_and_plot():
    from mufin_lib import plots
    from mufin_lib.report import ranker_variants_table

    def row(variant, alone, fused):
        test = {"Module IV alone": {"P@1": alone, "P@5": alone / 2}, "MUFIN-(alpha=1)": {"P@1": 27.0, "P@5": 20.0},
                "MUFIN (tuned alpha)": {"P@1": fused, "P@5": fused / 2}}
        return {"run": "r", "data": "SYNTHETIC catalogue", "variant": variant, "alpha": 0.7, "train_seconds": 1.0, "test": test}

    df = ranker_variants_table({"results": [row("paper_loss", 23.7, 27.4), row("low_lr", 27.2, 27.2)]})
    assert list(df["variant"]) == ["paper_loss", "low_lr"]
    assert df.loc[1, "Module IV alone P@1"] == 27.2 and df.loc[0, "MUFIN (tuned alpha) P@5"] == 13.7
    cols = [c for c in df.columns if c.endswith("P@1")]
    assert cols == ["Module IV alone P@1", "MUFIN-(alpha=1) P@1", "MUFIN (tuned alpha) P@1"]
    fig = plots.bar_metrics(df, cols, "variant")
    assert sorted(round(p.get_height(), 1) for p in fig.axes[0].patches) == [23.7, 27.0, 27.0, 27.2, 27.2, 27.4]


def test_training_curves_mark_the_kept_epoch():
    from mufin_lib import plots

    h = [{"epoch": e, "loss": 1.0 / e, "val_P@1": v, "val_fused_P@1": v + 1, "selected": e == 2}
         for e, v in ((1, 10.0), (2, 12.0), (3, 11.0))]
    fig = plots.training_curves({"IV": h}, metric=("val_P@1", "val_fused_P@1"))
    right = fig.axes[1]
    assert [list(l.get_ydata()) for l in right.lines[:2]] == [[10.0, 12.0, 11.0], [11.0, 13.0, 12.0]]
    kept = [l for l in right.lines if "kept" in l.get_label()]
    assert len(kept) == 1 and list(kept[0].get_xdata()) == [2, 2]


def test_paired_bootstrap_verdicts_and_exact_difference():
    """The difference is the metric's own (from per-point parts); a system that is better on most points wins, the
    same system ties itself with a zero-width interval, and a reversed pair loses."""
    from mufin_lib.metrics import evaluate, paired_bootstrap, point_parts

    rng = np.random.default_rng(0)
    n, L = 400, 50
    Y = sp.csr_matrix((rng.random((n, L)) < 0.05).astype(np.float32))
    Y[np.arange(n), rng.integers(0, L, n)] = 1
    good = sp.csr_matrix(Y.toarray() * 2 + rng.random((n, L)))  # positives first, mostly
    bad = sp.csr_matrix(rng.random((n, L)))
    inv_p = inv_propensity(Y)
    for m in ("P@1", "PSP@5"):
        g, b = point_parts(good, Y, inv_p, None, m), point_parts(bad, Y, inv_p, None, m)
        r = paired_bootstrap(g, b, 300, seed=1)
        exact = evaluate(good, Y, inv_p)[m] - evaluate(bad, Y, inv_p)[m]
        assert abs(r["diff"] - exact) < 1e-3 and r["verdict"] == "win" and r["lo"] > 0
        assert paired_bootstrap(b, g, 300, seed=1)["verdict"] == "loss"
        same = paired_bootstrap(g, g, 300)
        assert same["diff"] == same["lo"] == same["hi"] == 0 and same["verdict"] == "tie"


def test_peer_scorers_popularity_and_train_point_votes():
    from mufin_lib.baselines import popularity_scores, vote_scores as train_knn_scores

    Y_fit = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 1, 0], [0, 1, 1, 1]], np.float32))
    P = popularity_scores(Y_fit, 2, 2).toarray()
    assert (P[0] == P[1]).all() and P[0, 2] > P[0, 0] > 0 and P[0, 1] == 0 == P[0, 3]  # label 2 (3 buyers) first
    K = np.eye(3, dtype=np.float32)  # three training points, orthogonal
    Q = np.array([[1, 0, 0], [0, 0.6, 0.8]], np.float32)
    V = train_knn_scores(Q, K, Y_fit, 2).toarray()
    assert V[0, 0] > 0.99 and V[0, 1] < 0.01  # the nearest point's labels
    assert abs(V[1, 2] - 1.4) < 1e-4  # 0.8 (point 2) + 0.6 (point 1) on the label both have
    assert abs(V[1, 1] - 0.8) < 1e-4 and abs(V[1, 3] - 0.8) < 1e-4 and V[1, 0] == 0  # point 0 is not a neighbour


def test_frozen_peers_search_by_stage04s_vote_index_rule():
    """Label kNN and the votes peer search the index stage 04's rule gives MUFIN's votes (module3/shortlist.json):
    exact up to vote_hnsw_above keys and for runs without the record, HNSW beyond where its validation recall holds
    (its neighbours then nearly those of exact search), exact again where it does not."""
    from types import SimpleNamespace

    from mufin_lib.retrieval import exact_search
    from mufin_lib.stages.peers import _index_note, frozen_index

    rng = np.random.default_rng(0)
    keys = rng.standard_normal((3000, 16)).astype(np.float32)
    val, q = rng.standard_normal((50, 16)).astype(np.float32), rng.standard_normal((40, 16)).astype(np.float32)
    run = lambda **r: SimpleNamespace(shortlist_record=r)  # noqa: E731
    rule = {"vote_index": "auto", "vote_min_recall": 0.5}
    for r in ({}, {**rule, "vote_hnsw_above": 5000}, {"vote_index": "flat", "vote_hnsw_above": 10}):
        index, rec = frozen_index(run(**r), keys, val, 10)
        assert index.kind == rec["vote_index_chosen"] == "flat" and _index_note(rec) == ""
    index, rec = frozen_index(run(**rule, vote_hnsw_above=1000), keys, val, 10)
    assert index.kind == "hnsw" and rec["vote_recall_val"] >= 0.5 and "HNSW" in _index_note(rec)
    I, Ie = index.search(q, 10)[1], exact_search(q, keys, 10)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, Ie)]) > 0.5
    index, rec = frozen_index(run(**{**rule, "vote_min_recall": 1.01}, vote_hnsw_above=1000), keys, val, 10)
    assert index.kind == "flat" and rec["vote_recall_val"] is not None  # the recall did not hold: exact


def test_stage11_tabulates_the_training_throughput_and_label_side_results(tmp_path):
    """The JSON that benchmarks/training_throughput.py and label_side_precision.py write is what stage 11 reads (a
    format stage 11 refuses would stop every whole run at notebook 11)."""
    import json

    from mufin_lib.artifacts import Run
    from mufin_lib.stages.benchmarks import BenchmarksParams, stage

    b = tmp_path / "b"
    b.mkdir()
    (b / "training_throughput.json").write_text(json.dumps({"benchmark": "training_throughput", "machine": {"cpu_count": 2},
        "results": [{"run": "r", "data": "d", "what": "Module I", "points_per_epoch": 100, "epochs": 2,
                     "median_epoch_s": 1.0, "points_per_s": 100.0}, {"what": "text encoder", "items": 8, "items_per_s": 4.0}]}))
    side = {"Module IV alone (alpha=0)": {"P@1": 2.0, "P@5": 1.0}, "the paper's score (alpha=1)": {"P@1": 3.0, "P@5": 1.5}}
    (b / "label_side_precision.json").write_text(json.dumps({"benchmark": "label_side_precision", "results": [
        {"run": "r", "data": "d", "split": "val", "points": 10, "paper_alpha": 1.0, "float32": {"score_s": 1.0, **side},
         "float16": {"score_s": 1.0, **side}, "max_abs_score_diff": 1e-4}]}))
    r = stage(Run(tmp_path / "run"), BenchmarksParams(bench_dir=str(b)))
    assert list(r.tables["training"]["points_per_s"].fillna(0)) == [100.0, 0.0]
    lab = r.tables["label_side"]
    assert lab.loc[0, "Module IV alone (alpha=0) P@1 (float16)"] == 2.0 and lab.loc[0, "max |score diff|"] == 1e-4


def test_recall_at_k_equals_the_per_point_definition():
    """The vectorised recall against the definition written point by point (filtered pairs take no place, -1 is
    empty, a label listed twice counts once), on random shortlists with filters and duplicates."""
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    n, L, K = 120, 50, 12
    Y = sp.random(n, L, density=0.08, random_state=3, format="csr")
    Y.data[:] = 1
    labels = rng.integers(-1, L, (n, K))
    filt = np.unique(np.column_stack([rng.integers(0, n, 60), rng.integers(0, L, 60)]), axis=0)

    def naive(over):
        Yd = Y.tolil()
        for r, c in filt:
            Yd[r, c] = 0
        Yd = sp.csr_matrix(Yd)
        Yd.eliminate_zeros()
        fset = {(int(r), int(c)) for r, c in filt}
        out = {}
        for k in (1, 5, 12):
            found = []
            for i in range(n):
                pos = set(Yd.indices[Yd.indptr[i]:Yd.indptr[i + 1]].tolist())
                cand = [int(l) for l in labels[i] if l >= 0 and (i, int(l)) not in fset][:k]
                if pos or over == "all":
                    found.append(len(pos.intersection(cand)) / max(len(pos), 1))
            out[f"R@{k}"] = round(100 * float(np.mean(found)), 4)
        return out

    for over in ("all", "positive"):
        assert recall_at_k(labels, Y, ks=(1, 5, 12), filt=filt, over=over) == naive(over)


def test_plt_threads_reach_napkinxc(monkeypatch):
    """07.plt_threads is napkinXC's thread count (1 by default: results repeat)."""
    import napkinxc.models

    from mufin_lib.baselines import plt_scores

    seen = []

    class FakePLT:
        def __init__(self, _dir, **kw):
            seen.append(kw["threads"])

        def fit(self, X, Y):
            pass

        def predict_proba(self, X, top_k):
            return [[(1, 0.5)] for _ in range(X.shape[0])]

    monkeypatch.setattr(napkinxc.models, "PLT", FakePLT)
    X, Y = sp.csr_matrix(np.eye(3, dtype=np.float32)), sp.csr_matrix(np.eye(3, dtype=np.float32))
    plt_scores(X, Y, X, 1)
    S = plt_scores(X, Y, X, 1, threads=2)[0]
    assert seen == [1, 2] and S.shape == (3, 3) and S[:, 1].nnz == 3


def test_untuned_plt_peer_runs(smoke_run):
    """07.tune=false trains each PLT once and scores no validation points (it failed on the missing validation scores:
    the real-shape run's stage 07 with one PLT fit)."""
    from mufin_lib.artifacts import open_run
    from mufin_lib.stages.peers import PeersParams, peer_rows

    rows = peer_rows(open_run(smoke_run[0]), PeersParams(peers="tfidf-plt", tune=False), 5, progress=False)
    assert [r.method for r in rows] == ["TF-IDF + napkinXC PLT (exact search, defaults)"] and rows[0].scores.nnz > 0
