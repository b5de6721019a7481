"""Outfit completion (issue 24): the Polyvore Outfits reader and its errors, FITB and compatibility AUC against a
direct computation, an unseen label scored from its content alone, the disjoint split kept out of training, and the
chain + stage 14 at smoke size through the runner (the kit's synthetic outfit set)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def outfit_dir(tmp_path_factory):
    """A tiny synthetic set in the layout (24 / 10 / 10 outfits), written fresh: the tests below damage copies of it."""
    from mufin_lib.data.polyvore import generate_outfits

    return generate_outfits(tmp_path_factory.mktemp("outfits") / "set", "24", seed=3)


@pytest.fixture
def copy(outfit_dir, tmp_path):
    import shutil

    dst = tmp_path / "c"
    shutil.copytree(outfit_dir, dst, ignore=shutil.ignore_patterns("images"))
    (dst / "polyvore_outfits" / "images").symlink_to(outfit_dir / "polyvore_outfits" / "images")
    return dst


def test_the_reader_reads_every_file_and_both_spellings(outfit_dir, copy):
    from mufin_lib.data.polyvore import read_polyvore

    o = read_polyvore(outfit_dir)
    st = {r["split"]: r for r in o.stats()}
    assert [st[s]["outfits"] for s in ("train", "valid", "test")] == [24, 10, 10]
    assert all(st[s]["fitb_questions"] == st[s]["outfits"] == st[s]["compat_pos"] == st[s]["compat_neg"] for s in st)
    q = o.fitb["test"][0]
    raw = json.loads((outfit_dir / "polyvore_outfits/disjoint/fill_in_blank_test.json").read_text())[0]
    right = raw["answers"][q.correct]
    assert right.rpartition("_")[0] == raw["question"][0].rpartition("_")[0]  # the right answer is of the question's set
    assert len(q.given) == len(raw["question"]) and o.items[q.given[0]].categories  # `catgeories` read
    # the other spelling, `categories`, reads the same
    meta_f = copy / "polyvore_outfits/polyvore_item_metadata.json"
    meta = json.loads(meta_f.read_text())
    meta_f.write_text(json.dumps({k: {("categories" if a == "catgeories" else a): b for a, b in v.items()}
                                  for k, v in meta.items()}))
    o2 = read_polyvore(copy)
    assert {k: v.categories for k, v in o2.items.items()} == {k: v.categories for k, v in o.items.items()}
    # pointing at polyvore_outfits/ itself works too
    assert len(read_polyvore(outfit_dir / "polyvore_outfits").items) == len(o.items)


def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("case, pattern", [
    ("metadata_truncated", r"polyvore_item_metadata.json: line 1, column \d+: not valid JSON"),
    ("no_semantic_category", r"polyvore_item_metadata.json: item '1' \(record 1\): no `semantic_category`"),
    ("categories_not_a_list", r"item '1' \(record 1\): `catgeories` must be a list"),
    ("unknown_item", r"disjoint/train.json: outfit 2 \(set_id train1\): item '99999' is not in polyvore_item_metadata.json"),
    ("repeated_set", r"disjoint/valid.json: outfit 2: set_id 'valid0' repeats outfit 1"),
    ("fitb_unknown_ref", r"fill_in_blank_test.json: question 1: 'test0_9' names no item of the split's outfits"),
    ("fitb_no_right_answer", r"fill_in_blank_valid.json: question 1: 0 answers belong to the question's outfit"),
    ("compat_bad_label", r"compatibility_test.txt: line 3: expected `label setid_index"),
    ("not_disjoint", r"items are in train and in another split .*not a disjoint split"),
])
def test_each_malformed_record_is_named_with_its_file_and_line(copy, case, pattern):
    from mufin_lib.data.polyvore import PolyvoreFormatError, read_polyvore

    d = copy / "polyvore_outfits"
    meta_f = d / "polyvore_item_metadata.json"
    if case == "metadata_truncated":
        meta_f.write_text(meta_f.read_text()[:-40])
    elif case == "no_semantic_category":
        _edit_json(meta_f, lambda m: m["1"].pop("semantic_category"))
    elif case == "categories_not_a_list":
        _edit_json(meta_f, lambda m: m["1"].__setitem__("catgeories", "tops"))
    elif case == "unknown_item":
        _edit_json(d / "disjoint/train.json", lambda o: o[1]["items"][0].__setitem__("item_id", "99999"))
    elif case == "repeated_set":
        _edit_json(d / "disjoint/valid.json", lambda o: o[1].__setitem__("set_id", "valid0"))
    elif case == "fitb_unknown_ref":
        _edit_json(d / "disjoint/fill_in_blank_test.json", lambda q: q[0]["question"].__setitem__(0, "test0_9"))
    elif case == "fitb_no_right_answer":
        def wrong(q):
            sid = q[0]["question"][0].rpartition("_")[0]
            q[0]["answers"] = [a for a in q[0]["answers"] if a.rpartition("_")[0] != sid] * 2
        _edit_json(d / "disjoint/fill_in_blank_valid.json", wrong)
    elif case == "compat_bad_label":
        lines = (d / "disjoint/compatibility_test.txt").read_text().splitlines()
        lines[2] = "2 " + lines[2].split(" ", 1)[1]
        (d / "disjoint/compatibility_test.txt").write_text("\n".join(lines) + "\n")
    elif case == "not_disjoint":
        train = json.loads((d / "disjoint/train.json").read_text())
        _edit_json(d / "disjoint/test.json", lambda o: o[0]["items"][0].__setitem__("item_id", train[0]["items"][0]["item_id"]))
    with pytest.raises(PolyvoreFormatError, match=pattern):
        read_polyvore(copy)


def test_a_missing_layout_is_a_clear_error(tmp_path):
    from mufin_lib.data.polyvore import read_polyvore

    with pytest.raises(FileNotFoundError, match=r"no polyvore_outfits/ folder"):
        read_polyvore(tmp_path)


def test_fitb_and_auc_equal_a_direct_computation():
    """Hand-made: 5 items, pair scores from a table; FITB by the mean over the given items, AUC by counting pairs."""
    from mufin_lib.data.polyvore import Question
    from mufin_lib import outfits as of

    S = np.array([[0, 3, 1, 0, 2], [3, 0, 0, 5, 1], [1, 0, 0, 1, 4], [0, 5, 1, 0, 0], [2, 1, 4, 0, 0]], float)
    S[0, 2] = 2.5  # asymmetric: s(0 -> 2) != s(2 -> 0)
    row = {str(i): i for i in range(5)}
    qs = [Question(["0", "1"], ["2", "3", "4"], 1, 1), Question(["2"], ["0", "1", "4"], 0, 2)]
    fp = of.fitb_pairs(qs, row)
    s = S[fp.a, fp.b]
    # question 1: 2 -> (2.5 + 0) / 2 = 1.25, 3 -> (0 + 5) / 2 = 2.5, 4 -> (2 + 1) / 2 = 1.5: picks 3, right
    # question 2: 0 -> 1, 1 -> 0, 4 -> 4: picks 4, wrong
    assert [c.tolist() for c in of.fitb_candidate_scores(s, fp)] == [[1.25, 2.5, 1.5], [1.0, 0.0, 4.0]]
    assert of.fitb_right(s, fp).tolist() == [1.0, 0.0]
    lines = [(1, ["0", "1", "3"]), (0, ["0", "2"]), (1, ["2", "4"]), (0, ["1", "2", "4"])]
    cp = of.compat_pairs(lines, row)
    out = of.outfit_scores(S[cp.a, cp.b], cp)
    direct = [np.mean([S[a, b] for a in map(int, its) for b in map(int, its) if a != b]) for _, its in lines]
    assert np.allclose(out, direct)
    labels = np.array([l for l, _ in lines])
    pairs = [(p, n) for p in out[labels == 1] for n in out[labels == 0]]
    assert of.auc(out, labels) == pytest.approx(np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs]))
    d = of.auc_difference(out, -out, labels, 200, 0)
    assert d["diff"] > 0 and d["lo"] <= d["diff"] <= d["hi"]


def test_an_unseen_label_is_scored_from_its_content_alone():
    """Module IV on a label it never had: the free vector at zero, whatever the mix; equal to pair_scores of a label
    whose free vector is zero, and unchanged when every trained label's classifier changes."""
    from mufin_lib.model import ModelParams, MufinEncoder
    from mufin_lib.ranker import Ranker

    torch.manual_seed(0)
    r = Ranker(MufinEncoder(ModelParams(D=16, text_dim=8, image_dim=8)), n_labels=5, mix="per_label").eval()
    X, m = torch.randn(3, 2, 16), torch.ones(3, 2, dtype=torch.bool)
    Z, mz = torch.randn(3, 2, 16), torch.ones(3, 2, dtype=torch.bool)
    x1, z1 = torch.randn(3, 16), torch.randn(3, 16)
    with torch.no_grad():
        unseen = r.unseen_pair_scores(X, m, x1, Z, mz, z1)
        r.free[4] = 0.0
        assert torch.allclose(unseen, r.pair_scores(X, m, x1, Z, mz, z1, torch.tensor([4, 4, 4])), atol=1e-6)
        assert not torch.allclose(unseen, r.pair_scores(X, m, x1, Z, mz, z1, torch.tensor([0, 1, 2])), atol=1e-4)
        r.free.normal_()
        r.mix.normal_()
        assert torch.allclose(unseen, r.unseen_pair_scores(X, m, x1, Z, mz, z1))


def test_valid_and_test_items_never_reach_the_chain(outfit_dir, tmp_path):
    """task outfits: the XC data the chain trains on holds train-outfit items only; every item is in the items root."""
    from mufin_lib.data.polyvore import read_polyvore, to_xc
    from mufin_lib.data.xc import read_xc

    o = read_polyvore(outfit_dir)
    xc_root, items_root, rep = to_xc(o, tmp_path, "outfits", 0.1, 0)
    ds = read_xc(xc_root)
    seen = set(ds.uids["label"]) | set(ds.uids["train"]) | set(ds.uids["test"])
    held = set(o.split_items("valid")) | set(o.split_items("test"))
    assert seen == set(o.split_items("train")) and not seen & held
    assert set(read_xc(items_root).uids["label"]) == seen | held
    # labels: the items worn with it, never itself; symmetric
    Y = ds.Y["train"]
    lab = {u: i for i, u in enumerate(ds.uids["label"])}
    for r, u in enumerate(ds.uids["train"][:20]):
        partners = {i for _, its in o.outfits["train"] if u in its for i in its} - {u}
        assert {ds.uids["label"][c] for c in Y[r].indices} == partners and lab[u] not in Y[r].indices
    # each label's semantic > fine category, for stage 09
    from mufin_lib.data.xc import label_category_paths
    paths = label_category_paths(xc_root, ds.uids["label"])
    assert len(paths) == len(ds.uids["label"]) and paths[0][0] == o.items[ds.uids["label"][0]].semantic_category
    # task xc: labels span every split's items
    xc2, _, _ = to_xc(o, tmp_path / "xc", "xc", 0.3, 0)
    assert set(read_xc(xc2).uids["label"]) == seen | held


def test_weights_are_chosen_by_the_written_rule():
    from mufin_lib.outfits import choose_weights

    e, r = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    # a measure that every alpha ties on: the larger alpha (Module I alone) wins the tie
    al, w, curve = choose_weights(lambda s: 1.0, e, r, None, [0.0, 0.5, 1.0], [0.0, 0.1])
    assert (al, w) == (1.0, 0.0) and len(curve) == 3
    al, w, _ = choose_weights(lambda s: -abs(s[0] - 0.3), e, r, np.array([1.0, 0.0]), [0.0, 0.5, 1.0], [0.0, 0.1, 0.2])
    assert (al, w) == (0.0, 0.2)  # 0 x 1 + 1 x 0 + 0.2 x 1 = 0.2: the closest to 0.3 on the grid


def test_outfit_completion_refuses_a_run_without_outfits(tmp_path):
    from mufin_lib.artifacts import Run
    from mufin_lib.stages.outfits import outfit_data

    (tmp_path / "r" / "dataset").mkdir(parents=True)
    (tmp_path / "r" / "dataset" / "dataset.json").write_text(json.dumps({"source": "synthetic", "outfits": None}))
    with pytest.raises(ValueError, match=r"stage 01 read no outfit set .*--preset mango"):
        outfit_data(Run(tmp_path / "r"))


def test_a_whole_run_leaves_notebook_14_out_unless_its_preset_names_it(tmp_path, monkeypatch):
    from mufin_lib import run as runner

    monkeypatch.setattr(runner, "RUNS_DIR", tmp_path)
    rec, _ = runner.start_run("smoke", None, [], "a")
    assert "14_outfits" not in rec["notebooks"] and "08_ablations" not in rec["notebooks"]
    rec, _ = runner.start_run("outfits-smoke", None, [], "b")
    assert list(rec["notebooks"]) == ["01_dataset_curation", "02_module1_siamese", "03_module2_retrieval",
                                      "04_module3_shortlists", "05_module4_ranker", "14_outfits"]
    assert rec["notebooks"]["01_dataset_curation"]["parameters"]["source"] == "polyvore"


@pytest.mark.smoke
def test_outfit_completion_at_smoke_size(tmp_path):
    """The chain on the synthetic set's train outfits, then stage 14: every row of Table 3 with its intervals; MUFIN
    above chance (4 candidates: 25%) and above the random row; no scored item was seen in training; test scored once."""
    env = dict(os.environ, MUFIN_RUNS_DIR=str(tmp_path / "runs"), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "mufin_lib.run", "--preset", "outfits-smoke", "--run-id", "o"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "runs" / "o" / "outfits"
    m = json.loads((out / "metrics.json").read_text())
    assert m["synthetic"] and m["test_scorings"] == 1 and m["items_seen_in_training"] == 0
    rows = {x["method"]: x for x in m["rows"]}
    from mufin_lib.stages.outfits import KIT, MAIN, PAPER_BASELINES

    assert {MAIN, KIT, "random", "fine-category co-occurrence", "TF-IDF (title)", "TF-IDF (title + description)",
            "frozen encoders (text+image)", "Module I alone (x^1 . z^1)", *PAPER_BASELINES} <= set(rows)
    main = rows[MAIN]
    lo = float(main["FITB 95% CI"].strip("[]").split(",")[0])
    assert lo > 25.0 and main["AUC"] > 60.0
    assert rows["random"]["FITB vs MUFIN"] == "loss"
    assert all(rows[n]["FITB"] is None for n in PAPER_BASELINES)  # named, never given a number
    for name in rows:
        if rows[name]["FITB"] is not None and name != MAIN:
            assert rows[name]["FITB 95% lo"] <= rows[name]["FITB - MUFIN"] <= rows[name]["FITB 95% hi"]
    assert (out / "fig_outfit_examples.png").stat().st_size > 10_000 and (out / "table3_outfits.tex").exists()
