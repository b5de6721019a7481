"""Guards against leakage, tested where they would break (issue 25's mutation list): on the smoke run, what is
tuned or voted on never sees a validation point's labels, stage 04 excludes each training point's own row, and the
fusion is tuned on the validation half it says."""
import numpy as np
import pytest
import scipy.sparse as sp


@pytest.fixture(scope="module")
def run(smoke_run):
    from mufin_lib.artifacts import open_run
    return open_run(smoke_run[0])


@pytest.mark.smoke
def test_validation_labels_never_count_in_votes_popularity_or_centroids(run):
    """Labels bought only by validation points: no popularity, no voter has them, no centroid. Fails if the fit
    labels were all of train, or the voters were built on train rows including validation."""
    fit, val = run.carve
    Y = sp.csr_matrix(run.dataset.Y["train"] > 0)
    only_val = np.flatnonzero((np.asarray(Y[val].sum(0)).ravel() > 0) & (np.asarray(Y[fit].sum(0)).ravel() == 0))
    assert len(only_val) > 10  # the smoke catalogue has such labels: the test can fail
    assert np.all(run.popularity[only_val] == 0)
    votes = run.train_votes(20)
    assert votes.keys.shape[0] == len(fit) and votes.Y[:, only_val].nnz == 0
    assert not set(run.label_centroids.labels.tolist()) & set(only_val.tolist())


@pytest.mark.smoke
def test_stage04_excludes_each_training_points_own_row(run, tmp_path):
    """Stage 04 with training-point votes, on a copy of the smoke run: its train shortlists equal a recomputation in
    which each training point's own row is excluded from its voters (a wrong fit-position map, or none, differs)."""
    import shutil

    from mufin_lib.artifacts import open_run
    from mufin_lib.bags import embed_rows
    from mufin_lib.retrieval import shortlist_points
    from mufin_lib.stages.module3 import Module3Params, second_source, stage

    copy = tmp_path / "run"
    for part in ("dataset", "module1", "module2"):
        shutil.copytree(run.dir / part, copy / part)
    c = open_run(copy)
    p = Module3Params(augment="votes")
    stage(c, p)
    _, saved = c.shortlists("train")
    fit = c.carve[0]
    rows = fit[:300]  # fit points are among the voters: excluding their own row changes their votes
    fit_pos = np.full(c.dataset.Y["train"].shape[0], -1)
    fit_pos[fit] = np.arange(len(fit))
    x1 = embed_rows(c.module1, c.bags, c.bags.rows_of(c.split("train").uids))[rows]
    second = second_source(c, p.augment, p.vote_neighbours)
    _, right = shortlist_points(c.index, x1, p.shortlist, second, p.augment_share, fit_pos[rows])
    _, unexcluded = shortlist_points(c.index, x1, p.shortlist, second, p.augment_share, None)
    assert np.array_equal(saved[rows], right)
    assert not np.array_equal(right, unexcluded)  # the exclusion changes something here: the test can fail


@pytest.mark.smoke
def test_the_fusion_is_tuned_on_the_validation_half_it_names(run, tmp_path):
    """Stage 06 on a copy of the smoke run: the curve it saves is recomputed on the val-alpha half from the scores
    alone; tuned on test (or on the other half) it would save another."""
    import shutil

    from mufin_lib.artifacts import open_run
    from mufin_lib.fusion import tune_alpha
    from mufin_lib.stages.evaluate import EvaluateParams, score_split, stage

    copy = tmp_path / "run"
    for part in ("dataset", "module1", "module2", "module3", "module4"):
        shutil.copytree(run.dir / part, copy / part)
    c = open_run(copy)
    p = EvaluateParams(timing_points=0)
    stage(c, p)
    rec = c.alpha_record
    inv_p = c.inv_propensity(tuning=True)
    curves = {}
    for split in ("val-alpha", "val-epoch", "test"):
        sp_ = c.split(split)
        curves[split] = tune_alpha(*score_split(c, split), sp_.Y, sp_.filter, inv_p, metric=p.alpha_metric)[1]
    assert curves["val-alpha"] == rec["curve"]
    assert curves["test"] != rec["curve"] and curves["val-epoch"] != rec["curve"]


@pytest.mark.smoke
def test_every_stage_that_prints_psp_uses_the_runs_propensity(run, tmp_path):
    """On a copy of the smoke run whose stage 01 recorded other A, B (Amazon's 0.6 / 2.6), stage 02's Module I (its
    finished model evaluated again) and stage 03's exact P-I-vec search print the PSP@5 that a recomputation at those
    A, B gives (a stage that took the kit's fallback 0.55 / 1.5 would print another)."""
    import json
    import shutil

    from mufin_lib.artifacts import open_run
    from mufin_lib.module1 import evaluate_model
    from mufin_lib.stages.module2 import Module2Params
    from mufin_lib.stages.module2 import stage as stage03

    copy = tmp_path / "run"
    for part in ("dataset", "module1"):
        shutil.copytree(run.dir / part, copy / part)
    f = copy / "dataset" / "metrics.json"
    m = json.loads(f.read_text())
    assert m["propensity"] == {"A": 0.55, "B": 1.5, "from": "data_manifest/synthetic-smoke.yaml"}
    m["propensity"] = {"A": 0.6, "B": 2.6, "from": "a test"}
    f.write_text(json.dumps(m))
    c = open_run(copy)
    want = evaluate_model(c.module1, c.bags, c.split("test"), c.dataset.uids["label"], c.inv_propensity())["PSP@5"]
    fallback = evaluate_model(c.module1, c.bags, c.split("test"), c.dataset.uids["label"],
                              run.inv_propensity())["PSP@5"]
    assert abs(want - fallback) > 0.01  # the two settings differ here: the test can fail
    from mufin_lib.stages.module1 import load_params
    from mufin_lib.stages.module1 import stage as stage02

    r2 = stage02(c, load_params(c), progress=False)
    m1 = next(r for r in r2.summary["results"] if r["model"] == "Module I (text+image)" and r["split"] == "test")
    assert m1["PSP@5"] == pytest.approx(want, abs=1e-3)
    r3 = stage03(c, Module2Params(compare=True))
    vec_flat = next(r for r in r3.summary["results"] if r["retrieval"] == "P-I-vec / flat")
    assert vec_flat["PSP@5"] == pytest.approx(want, abs=1e-3)
