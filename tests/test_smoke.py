"""Smoke tier: the chain at smoke size through the runner (tests/conftest.py: smoke_run), and numbers read from
each stage's metrics.json with bounds that a broken stage would miss. The smoke catalogue is deterministic
(generator, seeds), so counts are exact; metrics are compared between stages that must agree."""
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parent.parent


def metrics(run_dir, stage, name="metrics.json"):
    return json.loads((run_dir / stage / name).read_text())


def by(rows, **match):
    hits = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, rows)
    return hits[0]


def test_stage01_dataset_and_frozen_encoders(smoke_run):
    run_dir, _ = smoke_run
    m = metrics(run_dir, "dataset")
    assert m["synthetic"] is True and m["data"] == "SYNTHETIC catalogue"
    st = m["stats"]
    assert (st["N_train"], st["N_test"], st["L"]) == (1327, 569, 2000)  # the smoke catalogue's manifest
    p1 = {r["modality"]: r["P@1"] for r in m["frozen_encoders"]}
    # each modality carries signal, and the two together more than either
    assert p1["text"] > 1.0 and p1["image"] > 2 * p1["text"] and p1["text+image"] > p1["image"]
    info = json.loads((run_dir / "dataset" / "dataset.json").read_text())
    assert info["root"] and info["input_path"] == ""  # the dataset root, not the user's input path


def test_stage02_module1_learns_and_images_help(smoke_run):
    run_dir, _ = smoke_run
    m = metrics(run_dir, "module1")
    rows = m["results"]
    ti = by(rows, model="Module I (text+image)", split="test")
    t = by(rows, model="Module I (text)", split="test")
    frozen = by(rows, model="frozen encoders (text+image)", split="test")
    assert ti["P@1"] > 3 * t["P@1"]  # images carry most of the smoke catalogue's signal
    # 4 epochs: near the frozen encoders, never far below (measured 13.71 against 17.05; the paper's triplet loss,
    # which collapses on this catalogue, 10.90)
    assert ti["P@1"] > 0.75 * frozen["P@1"]
    for name, hist in m["history"].items():
        assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"], name  # the loss falls
        assert all("val_P@1" in h for h in hist)
        assert hist[-1]["label_cosine"] < 0.5, name  # not collapsed (triplet: above 0.99 on the default catalogue)
    assert m["module1_minus_frozen_P@1"] == pytest.approx(ti["P@1"] - frozen["P@1"], abs=1e-3)


def test_stage03_exact_vec_retrieval_is_module1_and_hnsw_finds_the_exact_labels(smoke_run):
    run_dir, _ = smoke_run
    m = metrics(run_dir, "module2")
    ti = by(metrics(run_dir, "module1")["results"], model="Module I (text+image)", split="test")
    vec_flat = by(m["results"], retrieval="P-I-vec / flat")
    # exact search over z_l alone is Module I's own exact nearest-label evaluation
    assert vec_flat["P@1"] == pytest.approx(ti["P@1"], abs=1e-6)
    assert m["hnsw_vs_exact_overlap"] > 0.95
    bag = by(m["results"], retrieval="P-I-bag / hnsw")
    assert bag["R@10"] <= bag["R@50"] <= bag["R@100"] and bag["R@100"] > 50


def test_stage04_shortlists_agree_with_stage03(smoke_run):
    run_dir, _ = smoke_run
    rows = metrics(run_dir, "module3")["shortlists"]
    test = by(rows, split="test", **{"shortlist from": "index"})
    chosen = by(metrics(run_dir, "module2")["results"], retrieval="P-I-bag / hnsw")
    # beside it, each other source alone on the same test points: training-point votes and label centroids
    alone = [r for r in rows if r["split"] == "test" and r["shortlist from"] != "index"]
    assert [r["shortlist from"] for r in alone] == ["votes of 20 training points only", "label centroids only"]
    assert all(0 < r["R@100"] <= 100 and r["R@10"] <= r["R@100"] for r in alone)
    assert test["R@100"] == pytest.approx(chosen["R@100"], abs=1e-6)  # the saved index, the same test points
    assert by(rows, split="val")["points"] == min(2000, round(0.15 * 1327))  # val_fraction 0.15, val_max 2000
    assert by(rows, split="train")["points"] == 1327


def test_stage05_keeps_an_epoch_chosen_on_validation(smoke_run):
    run_dir, _ = smoke_run
    m = metrics(run_dir, "module4")
    hist = m["history"]
    assert len(hist) == 3 and sum(bool(h.get("selected")) for h in hist) == 1
    best = max(hist, key=lambda h: (h["val_fused_P@1"], h["val_fused_nDCG@5"], h["val_nDCG@5"], -h["epoch"]))
    assert m["selected_epoch"] == best["epoch"]
    assert len({h["val_embedding_P@1"] for h in hist}) == 1  # the alpha = 1 reference does not train
    # the saved ranker is the selected epoch's: its validation check, recomputed from the saved model, gives the
    # history's numbers for that epoch (a stage that saved the last epoch, or another, would not)
    from mufin_lib.artifacts import open_run
    from mufin_lib.stages.module4 import Module4Params, _validation
    from mufin_lib.training import saved_record

    run = open_run(run_dir)
    p = Module4Params(**saved_record(run.need("module4", "model.pt"))["params"])
    again = _validation(run, p, run.bags.rows_of(run.dataset.uids["train"]), run.shortlists("train")[1])(run.ranker)
    chosen = next(h for h in hist if h.get("selected"))
    for k in ("val_P@1", "val_fused_P@1", "val_fused_nDCG@5", "val_alpha"):
        assert again[k] == pytest.approx(chosen[k], abs=1e-3), k


def test_stage06_alpha_is_the_best_on_validation_and_saved_with_the_run(smoke_run):
    run_dir, _ = smoke_run
    from mufin_lib.artifacts import open_run

    m = metrics(run_dir, "evaluate")
    rec = open_run(run_dir).alpha_record
    best = max(rec["curve"], key=lambda r: (r[rec["metric"]], r["alpha"]))
    assert rec["alpha"] == best["alpha"] == m["alpha"]
    rows = {r["method"]: r for r in m["results"]}
    paper_mufin, alpha1, mufin = rows[m["paper_fusion"]], rows["MUFIN-(alpha=1)"], rows[m["mufin"]]
    # every fused row names its pipeline: smoke's Module I is InfoNCE and its Module IV takes a fixed top 12; both keep
    # their best validation epochs
    assert m["paper_fusion"] == (f"MUFIN (paper fusion alpha={m['alpha']:g}; kit Modules I-IV: InfoNCE, Module I's best "
                                 "epoch, fixed top negatives, Module IV's best epoch)")
    assert m["mufin"].startswith("MUFIN (kit fusion alpha=") and m["mufin"].endswith("; " + m["pipeline"] + ")")
    assert not m["paper_pipeline"]
    # alpha = 1 re-scores Module I's shortlist by Module I's own score: its P@1 is Module I's, up to HNSW misses
    assert alpha1["P@1"] == pytest.approx(rows["Module I only (exact NN)"]["P@1"], abs=1.0)
    assert m["mufin_minus_alpha1_P@1"] == pytest.approx(mufin["P@1"] - alpha1["P@1"], abs=1e-3)
    # the kit's default adds the votes, tuned with alpha (log-popularity off: chosen so on validation);
    # the run predicts with them (the last row)
    terms = rec["terms"]
    assert terms["votes"] and not terms["prior"] and terms["prior_weight"] == 0  # the defaults chosen on validation
    # what prediction fuses with (fusion.json) gives, recomputed on the val-alpha half, the validation P@1 recorded
    # for the chosen weights (a stage that saved other weights than it chose would not)
    from mufin_lib.fusion import fuse
    from mufin_lib.metrics import evaluate
    from mufin_lib.stages.evaluate import score_split, split_terms

    run = open_run(run_dir)
    e, r, sl = score_split(run, "val-alpha")
    v, p = split_terms(run, "val-alpha", sl, run.fusion.vote_neighbours)
    f = run.fusion
    val = run.split("val-alpha")
    got = evaluate(fuse(e, r, sl, f.alpha, val.Y.shape[1], f.vote_weight * v + f.prior_weight * p), val.Y, None, val.filter)
    assert got["P@1"] == pytest.approx(terms["P@1"], abs=1e-3)
    assert (f.alpha, f.vote_weight, f.prior_weight) == (terms["alpha"], terms["vote_weight"], terms["prior_weight"])
    assert m["mufin"] == m["results"][-1]["method"] and "votes" in m["mufin"] and "log-popularity" not in m["mufin"]
    assert "training-point votes alone (Module I, 20 neighbours)" in rows
    wr = terms["without_ranker"]  # the same terms on Module I's score alone: the row that tells what Module IV adds
    assert wr["alpha"] == 1.0 and f"MUFIN-(alpha=1) + {wr['vote_weight']:g} votes (no Module IV)" in rows
    paper = "paper_P@1 (MM-AmazonTitles-300K)"
    # the paper's figure (data: ../shared/paper_tables) stands beside the paper's pipeline only: not on smoke's
    assert all(r[paper] is None or r[paper] != r[paper] for r in rows.values())  # empty/NaN
    t = m["timing_ms_per_point"]
    assert t["points"] == 50 and min(t["encode_ms"], t["retrieve_ms"], t["rank_ms"]) > 0
    one = t["one_product"]  # the same products asked for one at a time (as `mufin predict` serves one)
    assert one["products"] == 20 and min(one["encode_ms"], one["retrieve_ms"], one["rank_ms"]) > 0
    for ext in ("csv", "md", "tex"):
        assert (run_dir / "evaluate" / f"table2_main.{ext}").stat().st_size > 0


def test_stage07_peers_beside_mufin_with_intervals(smoke_run):
    """Stage 07's rows agree with the stages that made them (MUFIN's rows with stage 06, the frozen label kNN with
    stage 01's check), every peer that ran has metrics and an interval around its difference to MUFIN, and the
    verdict follows from the interval."""
    run_dir, _ = smoke_run
    m = metrics(run_dir, "peers")
    rows = {r["method"]: r for r in m["results"]}
    ev = {r["method"]: r for r in metrics(run_dir, "evaluate")["results"]}
    mufin = rows[m["reference"]]
    for name in ("MUFIN-(alpha=1)", "Module IV only (alpha=0)", m["reference"]):
        for k in ("P@1", "P@5", "PSP@5"):
            assert rows[name][k] == pytest.approx(ev[name][k], abs=1e-3), (name, k)
    assert rows["Module I (text+image)"]["P@1"] == pytest.approx(ev["Module I only (exact NN)"]["P@1"], abs=1e-3)
    frozen = {r["modality"]: r for r in metrics(run_dir, "dataset")["frozen_encoders"]}
    for mod in ("text", "image", "text+image"):
        assert rows[f"label kNN, frozen ({mod})"]["P@1"] == pytest.approx(frozen[mod]["P@1"], abs=1e-3)
    ran = [r for r in m["results"] if r["family"] == "peer" and r["P@1"] is not None]
    assert len(ran) >= 14  # popularity, PLT x2, label kNN x3, votes x3, and PLT x2 and votes x3 tuned (+ PECOS)
    assert {r["method"] for r in ran if r["tuned"]} == {
        "TF-IDF + napkinXC PLT (exact search, tuned)", "TF-IDF + napkinXC PLT (beam, tuned)",
        *(f"training-point votes (tuned), frozen ({mod})" for mod in ("text", "image", "text+image"))}
    # a "defaults" row is the peer at its defaults, whatever its tuned twin chose (napkinXC's C = 10)
    assert all(r["note"].startswith("1 thread; liblinear C=10;") or r["note"] == "1 thread; liblinear C=10"
               for r in ran if "PLT" in r["method"] and r["method"].endswith("defaults)"))
    for r in ran + [rows["Module IV only (alpha=0)"]]:
        for k in ("P@1", "PSP@5"):
            assert r[f"{k} 95% lo"] <= r[f"{k} - MUFIN"] <= r[f"{k} 95% hi"]
            assert r[f"{k} - MUFIN"] == pytest.approx(r[k] - mufin[k], abs=1e-3)
            want = "win" if r[f"{k} 95% lo"] > 0 else "loss" if r[f"{k} 95% hi"] < 0 else "tie"
            assert r[f"{k} vs MUFIN"] == want
    assert rows["popularity"]["P@1"] < mufin["P@1"]  # on the synthetic catalogue a constant list is far behind
    (twin,) = m["module1_twins_vs_main"]  # smoke trains a text-only twin: the photo must help, beyond noise
    assert twin["comparison"] == "Module I (text+image) - Module I (text)" and twin["P@1"] == "win"
    assert twin["P@1 diff"] == pytest.approx(rows["Module I (text+image)"]["P@1"] - rows["Module I (text)"]["P@1"], abs=1e-3)
    for ext in ("csv", "md", "tex"):
        assert (run_dir / "peers" / f"table_peers.{ext}").stat().st_size > 0
    assert (run_dir / "peers" / "fig_peers_intervals.png").stat().st_size > 0


def test_torchrun_entries_get_the_notebooks_parameters(smoke_run):
    """What a torchrun entry trains with = the run's recorded parameters of that notebook, then -p through the
    runner's parser (NN.key addresses one notebook)."""
    from mufin_lib.config import ConfigError, params_from
    from mufin_lib.stages.torchrun import stage_parameters
    from mufin_lib.stages.module1 import Module1Params
    from mufin_lib.stages.module4 import Module4Params

    run_dir, _ = smoke_run
    recorded = json.loads((run_dir / "run.json").read_text())["notebooks"]
    p5 = stage_parameters(run_dir, "05", ["05.lr=0.01", "epochs=7"], Module4Params)
    want = params_from(Module4Params, {**recorded["05_module4_ranker"]["parameters"], "lr": 0.01, "epochs": 7})
    assert p5 == want
    p2 = stage_parameters(run_dir, "02", [], Module1Params)
    assert p2 == params_from(Module1Params, recorded["02_module1_siamese"]["parameters"])
    with pytest.raises(ConfigError, match="notebook 05_module4_ranker is not selected"):
        stage_parameters(run_dir, "02", ["05.lr=0.1"])
    with pytest.raises(ConfigError, match="expects int"):
        stage_parameters(run_dir, "05", ["epochs=many"])


def test_stage07_tuned_peer_is_the_validation_best_and_scores_test_as_chosen(smoke_run):
    """A tuned peer's setting is the best on the val-alpha half by stage 06's metric, recomputed here from the frozen
    vectors (a peer tuned on test, or on the other half, picks otherwise), and its test row is that setting's
    scores."""
    import scipy.sparse as sp

    from mufin_lib.artifacts import open_run
    from mufin_lib.baselines import frozen_vectors, votes_of_neighbours, with_popularity
    from mufin_lib.fusion import PRIOR_GRID
    from mufin_lib.metrics import evaluate
    from mufin_lib.retrieval import exact_search
    from mufin_lib.stages.peers import VOTES_GRID

    run_dir, _ = smoke_run
    run = open_run(run_dir)
    row = next(r for r in metrics(run_dir, "peers")["results"] if r["method"] == "training-point votes (tuned), frozen (text)")
    metric = run.alpha_record["metric"]
    fit, val, test = run.split("fit"), run.split("val-alpha"), run.split("test")
    K = frozen_vectors(run.embeddings, fit.uids, "text")
    Y_fit = sp.csr_matrix(fit.Y)

    def scored(split, g, w):  # one search for the largest neighbourhood, cut to g (as the stage: ties keep their order)
        S, I = exact_search(frozen_vectors(run.embeddings, split.uids, "text"), K, max(VOTES_GRID))
        return with_popularity(votes_of_neighbours(S, I, Y_fit, g), run.popularity, w)

    grid = [20] + [g for g in VOTES_GRID if g != 20]
    val_metric = {(g, w): evaluate(scored(val, g, w), val.Y, None, val.filter)[metric] for g in grid for w in PRIOR_GRID}
    best = max(val_metric.values())
    first_best = next(key for key in val_metric if val_metric[key] == best)  # ties: the defaults, then the smaller weight
    assert (row["tuned_setting"]["neighbours"], row["tuned_setting"]["popularity"]) == first_best
    on_test = evaluate(scored(test, *first_best), test.Y, run.inv_propensity(), test.filter)
    assert row["P@1"] == pytest.approx(on_test["P@1"], abs=1e-3) and row["PSP@5"] == pytest.approx(on_test["PSP@5"], abs=1e-3)


def test_stage02_module1_keeps_its_best_validation_epoch(smoke_run):
    """model.pt holds the candidate with the best validation P@1, the untrained start among them: the saved model's
    validation P@1 (stage 02 evaluates the file) is that epoch's in the history."""
    run_dir, _ = smoke_run
    m = metrics(run_dir, "module1")
    t, hist = m["timing"]["text+image"], m["history"]["text+image"]
    cands = [(0, t["start_val_P@1"])] + [(h["epoch"], h["val_P@1"]) for h in hist]
    best = max(cands, key=lambda c: (c[1], -c[0]))
    assert t["selected_epoch"] == best[0]
    assert by(m["results"], model="Module I (text+image)", split="val")["P@1"] == pytest.approx(best[1], abs=1e-3)


def test_stage08_ablations_reuse_the_main_runs_stages_and_compare_point_by_point(smoke_run):
    """`mufin run --resume smoke --only 08 -p 08.variants=no-A_C`: the variant run takes stages 01-04 from the main run
    (the same files), retrains 05-06, and its row in Table 4 is its own stage 06's main row."""
    import os
    import subprocess
    import sys

    run_dir, env = smoke_run
    r = subprocess.run([sys.executable, "-m", "mufin_lib.run", "--resume", "smoke", "--only", "08", "-p",
                        "08.variants=no-A_C"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    var = run_dir.parent / "smoke.no-A_C"
    rec = json.loads((var / "run.json").read_text())["notebooks"]
    assert [n[:2] for n, e in rec.items() if e.get("reused_from", {}).get("run") == "smoke"] == ["01", "02", "03", "04"]
    assert all(not rec[n].get("reused_from") for n in rec if n[:2] in ("05", "06"))
    for f in ("module1/model.pt", "module2/index/index.faiss", "module3/shortlist_test.npz"):
        assert os.path.samefile(run_dir / f, var / f), f
    # the dataset's root: the shared cache for the synthetic catalogue; a root inside the main run would name the variant's
    root = json.loads((run_dir / "dataset" / "dataset.json").read_text())["root"]
    assert json.loads((var / "dataset" / "dataset.json").read_text())["root"] == root.replace(str(run_dir.resolve()),
                                                                                             str(var.resolve()))
    assert metrics(var, "module4")["params"]["combiner"] == "none"
    t = metrics(run_dir, "ablations")
    rows = {r["row"]: r for r in t["results"]}
    ev, vev = metrics(run_dir, "evaluate"), metrics(var, "evaluate")
    main = rows[ev["mufin"]]
    assert main["P@1"] == pytest.approx(by(ev["results"], method=ev["mufin"])["P@1"], abs=1e-6)
    from mufin_lib.variants import BY_NAME

    noac = rows[BY_NAME["no-A_C"].row + ", kit fusion"]
    assert noac["P@1"] == pytest.approx(by(vev["results"], method=vev["mufin"])["P@1"], abs=1e-6)
    assert noac["compared with"] == ev["mufin"] and noac["reused"] == "01,02,03,04"
    assert noac["dP@1"] == pytest.approx(noac["P@1"] - main["P@1"], abs=1e-3)
    assert noac["dP@1 lo"] <= noac["dP@1"] <= noac["dP@1 hi"]
    # its paper's score against the main run's, beside the paper's stated delta for no A_C
    ps = rows[BY_NAME["no-A_C"].row + ", paper's score"]
    assert ps["compared with"] == ev["paper_fusion"] and ps["paper variant"] == "MUFIN-no A_C"
    assert ps["P@1"] == pytest.approx(by(vev["results"], method=vev["paper_fusion"])["P@1"], abs=1e-6)
    # the classifiers' share, as the paper measures it: MUFIN-(alpha=1) against the paper's score on the same run
    a1 = rows["MUFIN-(alpha=1)"]
    assert a1["compared with"] == ev["paper_fusion"]
    assert a1["dP@5"] == pytest.approx(a1["P@5"] - rows[ev["paper_fusion"]]["P@5"], abs=1e-3)
    assert (run_dir / "ablations" / "fig_table4_ablations.png").exists()
    assert t["variants_wall_s"] == noac["wall_s"] and t["variant_runs"]["no-A_C"]["reused"] == "01,02,03,04"  # once
