"""Stages 09, 10 and 12 on the smoke run: each number checked against a direct computation from the test scores
stage 07 saved (the result stages train nothing)."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from mufin_lib.data.xc import filter_rows
from mufin_lib.metrics import _drop, evaluate, topk_from_scores


def _subset(split, rows):
    return split.Y[rows], filter_rows(split.filter, rows)


def _opened(smoke_run, stage: str):
    """(run, the stage's metrics.json, the test split, its filtered truth, stage 07's saved scores)."""
    from mufin_lib.artifacts import open_run
    from mufin_lib.stages.peers import load_test_scores

    run = open_run(smoke_run[0])
    test = run.split("test")
    return run, run.metrics(stage), test, _drop(sp.csr_matrix(test.Y) > 0, test.filter), load_test_scores(run)


@pytest.mark.smoke
def test_stage07_saves_the_scores_its_table_reports(smoke_run):
    from mufin_lib.artifacts import open_run
    from mufin_lib.stages.peers import load_test_scores

    run_dir, _ = smoke_run
    run = open_run(run_dir)
    test = run.split("test")
    scores = load_test_scores(run)
    table = {r["method"]: r for r in run.metrics("peers")["results"]}
    assert set(scores) == {m for m, r in table.items() if r.get("P@1") is not None}
    inv_p = run.inv_propensity()
    for method, (_, S) in scores.items():
        m = evaluate(S, test.Y, inv_p, test.filter)
        assert m["P@1"] == pytest.approx(table[method]["P@1"], abs=1e-3) and m["PSP@5"] == pytest.approx(table[method]["PSP@5"], abs=1e-3)


@pytest.mark.smoke
def test_per_category_recomputed_for_one_category(smoke_run):
    from mufin_lib.artifacts import open_run
    from mufin_lib.stages.per_category import OTHER, point_categories
    from mufin_lib.stages.peers import load_test_scores

    run_dir, _ = smoke_run
    run = open_run(run_dir)
    m = run.metrics("per_category")
    rows = {r["category"]: r for r in m["P@5"]}
    cats, n_labels = point_categories(run, m["category_level"])
    test = run.split("test")
    assert rows["Overall"]["test points"] == len(test.uids) and rows["Overall"]["labels"] == run.dataset.num_labels
    assert sum(r["test points"] for c, r in rows.items() if c != "Overall") == len(test.uids)
    biggest = next(c for c in rows if c not in ("Overall", OTHER))
    pick = np.flatnonzero(np.asarray(cats) == biggest)
    assert rows[biggest]["test points"] == len(pick) and rows[biggest]["labels"] == n_labels[biggest]
    scores = load_test_scores(run)
    for name, method in m["methods"].items():
        Y, filt = _subset(test, pick)
        want = evaluate(scores[method][1][pick], Y, None, filt)
        assert rows[biggest][f"{name} P@5"] == pytest.approx(want["P@5"], abs=1e-3)
        assert rows["Overall"][f"{name} P@5"] == pytest.approx(evaluate(scores[method][1], test.Y, None, test.filter)["P@5"], abs=1e-3)
    p1 = {r["category"]: r for r in m["P@1"]}
    main = next(iter(m["methods"]))
    Y, filt = _subset(test, pick)
    assert p1[biggest][f"{main} P@1"] == pytest.approx(evaluate(scores[m["methods"][main]][1][pick], Y, None, filt)["P@1"], abs=1e-3)
    # the best per row is in bold in the Markdown table
    md = (run_dir / "per_category" / "table6_per_category.md").read_text()
    assert "**" in md and (run_dir / "per_category" / "fig3_per_category.png").stat().st_size > 0


@pytest.mark.smoke
def test_head_tail_bins_hold_equal_positives_and_add_up_to_the_metric(smoke_run):
    run, m, test, Yf, scores = _opened(smoke_run, "head_tail")
    pos = np.asarray(Yf.sum(0)).ravel()
    total = int(pos.sum())
    counts = [b["test positives"] for b in m["bins"]]
    assert sum(counts) == total and sum(b["labels"] for b in m["bins"]) == run.dataset.num_labels
    assert max(abs(c - total / len(counts)) for c in counts) <= pos.max()  # equal to within one label's positives
    # head to tail: every label of an earlier bin has at least the training points of every label of a later one
    lo_hi = [tuple(int(x) for x in b["train points per label"].split("-")) for b in m["bins"]]
    assert all(a[0] >= b[1] for a, b in zip(lo_hi, lo_hi[1:]))
    inv_p = run.inv_propensity()
    for name, method in m["methods"].items():
        whole = evaluate(scores[method][1], test.Y, inv_p, test.filter)
        share = [r for r in m["contributions"] if r["method"] == name]
        assert sum(r["P@5"] for r in share) == pytest.approx(whole["P@5"], abs=1e-2)
        assert sum(r["PSP@5"] for r in share) == pytest.approx(whole["PSP@5"], abs=1e-2)
    r = m["reading"]["P@5"]
    main = next(iter(m["methods"]))
    diff = [next(x["P@5"] for x in m["contributions"] if x["method"] == "MUFIN-(alpha=1)" and x["bin"] == b)
            - next(x["P@5"] for x in m["contributions"] if x["method"] == main and x["bin"] == b) for b in range(1, 6)]
    assert r["paper_reading_holds"] == (diff[-1] > 0 and diff[0] < 0)


@pytest.mark.smoke
def test_qualitative_marks_follow_the_truth(smoke_run):
    import pandas as pd

    run, m, test, Yf, scores = _opened(smoke_run, "qualitative")
    run_dir = smoke_run[0]
    pos = {u: i for i, u in enumerate(test.uids)}
    t = pd.read_csv(run_dir / "qualitative" / "fig8_qualitative.csv", keep_default_na=False)
    assert len(m["products"]) == 5 and len(m["methods"]) == 2  # 2 most bought + 3 random; the main MUFIN row and the best peer
    n_pos = Yf.getnnz(1)
    assert [n_pos[pos[u]] for u in m["products"][:2]] == sorted(n_pos, reverse=True)[:2]
    labels = {u: j for j, u in enumerate(run.dataset.uids["label"])}
    for name, method in m["methods"].items():
        S = _drop(scores[method][1], test.filter)
        for uid in m["products"]:
            i = pos[uid]
            top = [l for l in topk_from_scores(S[i], 5)[0] if l >= 0]
            shown = t[(t["product"] == uid) & (t["method"] == name)].sort_values("rank")
            assert [labels[u] for u in shown["label"]] == top
            truth = set(Yf.indices[Yf.indptr[i]:Yf.indptr[i + 1]].tolist())
            assert list(shown["bought with it"].astype(bool)) == [l in truth for l in top]
    assert (run_dir / "qualitative" / "fig8_qualitative.png").stat().st_size > 0
    assert json.loads((run_dir / "qualitative" / "metrics.json").read_text())["bought_share"]
