"""Table 4's variants and the stage reuse they stand on (fast tier): each variant resolves to the parameters the spec
names and nothing else; keys change exactly where parameters or inputs do; a reused stage's files are the same files."""
import json
import os

import pytest

from mufin_lib.config import discover_notebooks, resolve_parameters, select_notebooks
from mufin_lib.pipeline import differences
from mufin_lib.variants import BY_NAME, CHAIN, VARIANTS, overrides_of, selected

SHORT = {"02_module1_siamese": "02", "03_module2_retrieval": "03", "04_module3_shortlists": "04",
         "05_module4_ranker": "05", "06_evaluate": "06", "01_dataset_curation": "01"}


def resolved(preset: str, overrides=()) -> dict:
    """NN -> every parameter of notebooks 01-06 (defaults, preset, overrides), as the runner gives them."""
    specs = discover_notebooks()
    chain = select_notebooks(specs, ",".join(CHAIN))
    p = resolve_parameters(specs, chain, preset, list(overrides))
    return {SHORT[s.name]: {**{k: v for k, v in s.parameters.items() if k != "run_dir"}, **p[s.name]} for s in chain}


def changed(a: dict, b: dict) -> dict:
    """NN.key -> value of b, where b differs from a."""
    return {f"{n}.{k}": b[n][k] for n in a for k in a[n] if a[n][k] != b[n][k]}


@pytest.mark.parametrize("preset", ["smoke", "hm", "default"])
def test_each_variant_changes_what_the_spec_names_and_nothing_else(preset):
    base = resolved(preset)
    of = {v.name: resolved(preset, overrides_of(v)) for v in VARIANTS}
    twins = {"02.compare_modalities": ""} if base["02"]["compare_modalities"] else {}
    timing = {"06.timing_points": 0}
    # ConCat and no A_C change the ranker's representation block alone: stages 01-04 are the main run's
    assert changed(base, of["ConCat"]) == {"05.combiner": "concat", **timing}
    assert changed(base, of["no-A_C"]) == {"05.combiner": "none", **timing}
    # no A_S changes Module I's encoder, which Modules II-IV inherit (and no modality twins are trained)
    assert changed(base, of["no-A_S"]) == {"02.self_attention": False, **twins, **timing}
    # MUFIN as the paper specifies: the paper's Modules I-IV by pipeline.PAPER, and the paper's score
    paper = of["paper"]
    saved = {"module1": paper["02"], "module2": paper["03"], "module3": paper["04"], "module4": paper["05"]}
    assert differences(saved) == []
    assert (paper["06"]["votes"], paper["06"]["prior"], paper["05"]["patience"]) == (False, False, 0)
    # its no +ve and no +ve,-ve change Module I's sampling alone, against it
    assert changed(paper, of["paper-no-pos"]) == {"02.positives": "random"}
    assert changed(paper, of["paper-no-pos-neg"]) == {"02.positives": "random", "02.negatives": "random",
                                                      "02.cluster_after": 1_000_000}
    assert {v.name: v.against for v in VARIANTS} == {"paper": "main", "paper-no-pos": "paper", "paper-no-pos-neg": "paper",
                                                     "ConCat": "main", "no-A_S": "main", "no-A_C": "main"}


def test_variant_selection():
    assert [v.name for v in selected("paper-no-pos")] == ["paper", "paper-no-pos"]  # its reference comes along
    assert selected("") == [] and len(selected("all")) == len(VARIANTS)
    with pytest.raises(ValueError, match="no-such.*ConCat"):
        selected("ConCat,no-such")


def test_no_self_attention_is_a_feed_forward_layer_in_modules_one_and_four():
    from types import SimpleNamespace

    from mufin_lib.model import FeedForward, ModelParams, MufinEncoder, SelfAttention
    from mufin_lib.ranker import build_ranker

    enc = MufinEncoder(ModelParams(D=16, text_dim=8, image_dim=8, self_attention=False))
    assert isinstance(enc.A_S, FeedForward)
    for reinit in (False, True):  # the authors' re-initialised A_S stays a feed-forward layer in this ablation
        r = build_ranker(enc, 5, SimpleNamespace(seed=0, reinit_self_attention=reinit, combiner="cross_attention",
                                                 mix="global"))
        assert isinstance(r.encoder.A_S, FeedForward)
    assert isinstance(MufinEncoder(ModelParams(D=16, text_dim=8, image_dim=8)).A_S, SelfAttention)


def _notebooks(**changes):
    nbs = {n: {"parameters": {"seed": 0, "run_dir": "x"}} for n in
           ("01_dataset_curation", "02_module1_siamese", "03_module2_retrieval", "04_module3_shortlists", "05_module4_ranker")}
    for name, params in changes.items():
        nbs[name]["parameters"].update(params)
    return nbs


def test_keys_change_from_the_changed_stage_on_and_with_the_inputs(tmp_path):
    from mufin_lib import reuse

    a = reuse.notebook_keys(_notebooks())
    assert a == reuse.notebook_keys(_notebooks(**{"05_module4_ranker": {"run_dir": "elsewhere"}}))  # run_dir aside
    b = reuse.notebook_keys(_notebooks(**{"03_module2_retrieval": {"mode": "vec"}}))
    same = [n for n in a if a[n] == b[n]]
    assert same == ["01_dataset_curation", "02_module1_siamese"]  # 03 and every stage after it differ
    f = tmp_path / "meta.json"
    f.write_text("one")
    c1 = reuse.notebook_keys(_notebooks(**{"01_dataset_curation": {"input_path": str(f)}}))
    f.write_text("two")  # the same path, other content: stage 01's key (and all after it) changes
    c2 = reuse.notebook_keys(_notebooks(**{"01_dataset_curation": {"input_path": str(f)}}))
    assert all(c1[n] != c2[n] for n in c1)


def test_a_reused_stage_is_the_same_files_and_names_its_own_run(tmp_path):
    from mufin_lib import reuse

    runs = tmp_path / "runs"
    src, dst = runs / "main", runs / "main.ConCat"
    (src / "dataset" / "xc").mkdir(parents=True)
    (src / "dataset" / "xc" / "train.txt").write_text("data")
    (src / "dataset" / "dataset.json").write_text(json.dumps({"root": str((src / "dataset" / "xc").resolve())}))
    (src / "notebooks").mkdir()
    (src / "notebooks" / "01_dataset_curation.ipynb").write_text("{}")
    key = reuse.notebook_keys(_notebooks())["01_dataset_curation"]
    (src / "run.json").write_text(json.dumps({"notebooks": {"01_dataset_curation": {"status": "ok", "key": key}}}))
    dst.mkdir()
    assert reuse.find_done(runs, "other-key", "01_dataset_curation", dst) is None
    found = reuse.find_done(runs, key, "01_dataset_curation", dst)
    assert found and found[0] == src
    assert reuse.find_done(runs, key, "01_dataset_curation", src) is None  # never from itself
    taken = reuse.take(src, dst, "01_dataset_curation")
    assert sorted(taken) == ["dataset/dataset.json", "dataset/xc/train.txt"]
    assert os.path.samefile(src / "dataset" / "xc" / "train.txt", dst / "dataset" / "xc" / "train.txt")
    # the one file that names the other run's folder names this run's instead
    assert json.loads((dst / "dataset" / "dataset.json").read_text())["root"] == str((dst / "dataset" / "xc").resolve())
    assert (dst / "notebooks" / "01_dataset_curation.ipynb").read_text() == "{}"


def test_ablations_run_when_asked_and_bring_the_chain(tmp_path, monkeypatch):
    from mufin_lib import run

    monkeypatch.setattr(run, "RUNS_DIR", tmp_path / "runs")
    full, _ = run.start_run("smoke", None, [], "full")
    assert "08_ablations" not in full["notebooks"] and "07_peers" in full["notebooks"]  # a whole run: no variants
    asked, _ = run.start_run("hm", "08", [], "asked")
    assert [n[:2] for n in asked["notebooks"]] == [*CHAIN, "08"] and asked["reuse"]
    assert asked["notebooks"]["08_ablations"]["parameters"]["variants"] == "all"  # hm's Table 4: every variant
    assert BY_NAME["no-A_C"].paper == "MUFIN-no A_C"
    # an unknown variant is refused before anything runs, naming the valid ones
    with pytest.raises(run.ConfigError, match="no-such.*ConCat"):
        run.start_run("hm", "08", ["08.variants=no-such"], "bad")
    assert not (tmp_path / "runs" / "bad").exists()


def test_fit_share_keeps_the_validation_points_and_nests_the_fit_points():
    """The data-size benchmark compares shares on the same validation (and test) points: a smaller share's fit points
    are among a larger one's, and validation never enters the fit."""
    import numpy as np

    from mufin_lib.data.xc import carve_validation

    full_fit, val = carve_validation(1000, 0.15, 3, 100)
    assert len(val) == 100 and not set(full_fit) & set(val) and len(full_fit) == 900
    prev = set()
    for share in (0.25, 0.5, 1.0):
        fit, v = carve_validation(1000, 0.15, 3, 100, share)
        assert np.array_equal(v, val) and len(fit) == round(900 * share)
        assert prev <= set(fit) and set(fit) <= set(full_fit)
        prev = set(fit)


def test_a_variants_saved_time_is_what_the_stage_cost_where_it_ran(tmp_path):
    """A variant takes stage 01 from the ablations' main run, which took it from an earlier run: the time reuse saved
    is the earlier run's, not the milliseconds of the main run's copy."""
    from mufin_lib.stages.ablations import _run_time

    nb = "01_dataset_curation"
    for run, entry in (("first", {"status": "ok", "duration_s": 300.0}),
                       ("main", {"status": "ok", "duration_s": 0.1, "reused_from": {"run": "first"}}),
                       ("main.ConCat", {"status": "ok", "duration_s": 0.2, "reused_from": {"run": "main"}})):
        (tmp_path / run).mkdir()
        (tmp_path / run / "run.json").write_text(json.dumps({"notebooks": {nb: entry, "05_module4_ranker": {
            "status": "ok", "duration_s": 40.0}}}))
    t = _run_time(tmp_path / "main.ConCat")
    assert t == {"wall_s": 40.2, "reused": "01", "saved_s": 300.0}
