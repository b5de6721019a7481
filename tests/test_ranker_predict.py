"""Module IV and prediction: pair sampling, loss, fusion, alpha; `mufin predict` end to end on a tiny run."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from PIL import Image

from mufin_lib.fusion import fuse, tune_alpha
from mufin_lib.ranker import cosine_embedding_loss, sample_pairs, softmax_loss

ROOT = Path(__file__).resolve().parent.parent


def test_sample_pairs_takes_hard_negatives_from_the_shortlist():
    Y = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]], np.float32))
    shortlist = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    own = np.array([0, 3])
    pp, ll, tt = sample_pairs(Y, np.array([0, 1]), shortlist, own, 2, 2, np.random.default_rng(0))
    assert set(pp.tolist()) == {0}  # point 1 has no positive: no pairs
    assert sorted(ll[tt > 0].tolist()) == [1, 4]
    assert ll[tt < 0].tolist() == [2, 3]  # best-ranked non-positives; label 0 is the point itself


def test_sample_pairs_drops_near_duplicates_and_samples_by_rank():
    """max_csim: a negative whose label vector is within the threshold of a positive's is never taken. "rank":
    negatives sampled with probability 1 / (rank + 1), so the top one is taken far more often than the last."""
    Y = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0, 0, 0]], np.float32))
    shortlist = np.array([[2, 3, 4, 5, 6, 7, 1, 0]])
    Z = np.eye(8, dtype=np.float32)
    Z[2] = Z[1] * 0.95 + Z[2] * 0.05  # label 2: a near-duplicate of the positive 1
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    own = np.array([0])
    _, ll, tt = sample_pairs(Y, np.array([0]), shortlist, own, 1, 2, np.random.default_rng(0), "top", Z, 0.9)
    assert ll[tt < 0].tolist() == [3, 4]  # 2 dropped (cosine 0.999 > 0.9)
    _, ll, tt = sample_pairs(Y, np.array([0]), shortlist, own, 1, 2, np.random.default_rng(0), "top", Z, 1.0)
    assert ll[tt < 0].tolist() == [2, 3]  # max_csim 1: all kept
    rng, counts = np.random.default_rng(1), np.zeros(8)
    for _ in range(2000):
        _, ll, tt = sample_pairs(Y, np.array([0]), shortlist, own, 1, 2, rng, "rank")
        neg = ll[tt < 0]
        assert len(neg) == 2 and len(set(neg.tolist())) == 2 and not set(neg.tolist()) & {0, 1}
        counts[neg] += 1
    assert counts[2] > 2 * counts[7] > 0  # rank 1 against rank 6 (weights 1 and 1/6, without replacement)


def test_per_label_mix_and_frozen_first_epochs(tmp_path):
    """mix="per_label": one mix weight per label, scoring as the global one while all are equal. frozen_epochs:
    the encoder does not move in the frozen-feature epochs while the classifiers do; then it trains."""
    from mufin_lib.ranker import build_ranker, train_ranker
    from mufin_lib.stages.module4 import Module4Params

    enc, n_labels, args = _tiny_ranker_inputs(tmp_path)
    g = build_ranker(enc, n_labels, Module4Params())
    p = build_ranker(enc, n_labels, Module4Params(mix="per_label"))
    assert g.mix.shape == (1,) and p.mix.shape == (n_labels,)
    p.load_state_dict({**g.state_dict(), "mix": torch.zeros(n_labels)})
    x = torch.randn(3, 2, 16); m = torch.ones(3, 2, dtype=torch.bool); z = torch.randn(3, 16)
    lab = torch.tensor([0, 5, 9])
    assert torch.allclose(g.eval().pair_scores(x, m, x.mean(1), x, m, z, lab), p.eval().pair_scores(x, m, x.mean(1), x, m, z, lab))

    params = Module4Params(epochs=1, frozen_epochs=1, batch_size=32, warmup_steps=0, select_epoch=False,
                          classifier_lr=5e-3, mix="per_label")
    r0 = build_ranker(enc, n_labels, params)
    enc0 = {k: v.clone() for k, v in r0.encoder.state_dict().items()}
    r1, h = train_ranker(r0, *args, tmp_path / "m", params, stop_after=1, progress=False)
    assert h[0]["frozen_features"] is True
    assert all(torch.equal(enc0[k], v) for k, v in r1.encoder.state_dict().items())
    assert float((r1.mix.detach() != 0).float().mean()) > 0.2  # per-label weights moved for the labels trained
    r2, h = train_ranker(build_ranker(enc, n_labels, params), *args, tmp_path / "m", params, progress=False)
    assert [x["frozen_features"] for x in h] == [True, False]
    assert any(not torch.equal(enc0[k], v) for k, v in r2.encoder.state_dict().items())


def test_cosine_embedding_loss_matches_torch():
    s = torch.tensor([0.9, 0.2, 0.7, -0.1])
    t = torch.tensor([1.0, 1.0, -1.0, -1.0])
    ours = cosine_embedding_loss(s, t, 0.5)
    assert abs(float(ours) - float(np.mean([0.1, 0.8, 0.2, 0.0]))) < 1e-6


def test_softmax_loss_hand_computed():
    """Point 0: positive 0.9 against negatives 0.5 and 0.7; point 1 has positives but no negative (no loss)."""
    s = torch.tensor([0.9, 0.5, 0.7, 0.2, 0.8])
    t = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0])
    point = torch.tensor([0, 0, 0, 1, 1])
    want = -np.log(np.exp(9) / (np.exp(9) + np.exp(5) + np.exp(7))) / 3  # mean over the 3 positives
    assert abs(float(softmax_loss(s, t, point, 2, 0.1)) - want) < 1e-6
    # a negative scored above the positive costs more than one scored below
    worse = softmax_loss(torch.tensor([0.5, 0.9]), torch.tensor([1.0, -1.0]), torch.tensor([0, 0]), 1, 0.1)
    better = softmax_loss(torch.tensor([0.9, 0.5]), torch.tensor([1.0, -1.0]), torch.tensor([0, 0]), 1, 0.1)
    assert float(worse) > 4.0 > float(better)


def test_ranker_starts_as_the_embedding_score():
    """A_C's residual branch starts at zero and w_l at z_l^1, so before training the ranker scores a pair
    as <x^1, z_l^1>: fusion can only gain from what the ranker then learns."""
    from mufin_lib.model import ModelParams, MufinEncoder
    from mufin_lib.ranker import Ranker

    torch.manual_seed(0)
    enc = MufinEncoder(ModelParams(D=16, text_dim=8, image_dim=12)).eval()
    B, k = 5, 3
    inputs = (torch.randn(B, 8), torch.ones(B, dtype=torch.bool), torch.randn(B, k, 12),
              torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool))
    r = Ranker(enc, B).eval()
    with torch.no_grad():
        x1, X1, m1 = enc(*inputs)
        r.init_classifiers(x1.numpy())
        pp = torch.arange(B).repeat_interleave(B)
        pl = torch.arange(B).repeat(B)
        got = r.pair_scores(X1[pp], m1[pp], x1[pp], X1[pl], m1[pl], x1[pl], pl)
    want = (x1[pp] * x1[pl]).sum(-1)
    assert torch.allclose(got, want, atol=1e-4)


def test_fusion_and_alpha():
    sl = np.array([[0, 1, 2], [2, 1, 0]])
    emb = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]], np.float32)
    rnk = np.array([[0.1, 0.9, 0.0], [0.0, 0.1, 0.9]], np.float32)
    Y = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0]], np.float32))
    top = lambda S: [int(S[i].indices[np.argmax(S[i].data)]) for i in range(2)]
    assert top(fuse(emb, rnk, sl, 1.0, 3)) == [0, 2]  # embedding score alone
    assert top(fuse(emb, rnk, sl, 0.0, 3)) == [1, 0]  # ranker alone
    alpha, curve = tune_alpha(emb, rnk, sl, Y, None, np.ones(3), grid=np.array([0.0, 0.5, 1.0]))
    assert [c["P@1"] for c in curve] == [100.0, 100.0, 0.0]
    assert alpha == 0.5  # ties go to the larger alpha (the simpler model)


@pytest.mark.smoke
def test_predict_end_to_end(smoke_run, tmp_path):
    run_dir, env = smoke_run
    img = tmp_path / "kettle.png"
    Image.new("RGB", (90, 60), (30, 150, 150)).save(img)
    (tmp_path / "new.jsonl").write_text("\n".join([
        json.dumps({"id": "a", "title": "Oak Field Nova kettle", "images": [str(img)]}),
        json.dumps({"id": "b", "title": "Pine Brook Luna mug", "images": str(tmp_path / "gone.jpg")}),
        json.dumps({"id": "c", "title": "", "images": [str(tmp_path / "missing.jpg")]}),
        "{not json",
    ]) + "\n")
    r = subprocess.run([sys.executable, "-m", "mufin_lib.cli", "predict", "--run", str(run_dir),
                        "--input", str(tmp_path / "new.jsonl"), "--top-k", "4"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = [json.loads(l) for l in (tmp_path / "new.recommendations.jsonl").read_text().splitlines()]
    by_id = {o.get("id"): o for o in out}
    assert len(by_id["a"]["recommendations"]) == 4 and len(by_id["b"]["recommendations"]) == 4
    scores = [x["score"] for x in by_id["a"]["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all(x["label"].startswith("SYN") and x["title"] is not None for x in by_id["a"]["recommendations"])
    assert by_id["c"]["error"].endswith("line 3: no title and no usable image") and by_id["c"]["recommendations"] == []
    assert by_id["a"]["image_problems"] == []
    (why,) = by_id["b"]["image_problems"]  # recommended from its title, and it says its image was not read
    assert why.startswith(f"{tmp_path / 'gone.jpg'}: FileNotFoundError")
    assert any("line 4: not JSON" in o.get("error", "") for o in out)


def _tiny_ranker_inputs(tmp_path):
    """A 200-product synthetic set with fake embeddings, random shortlists and a small encoder: the inputs of
    train_ranker after the ranker and the output folder."""
    from mufin_lib.bags import BagTable
    from mufin_lib.data.synthetic import SyntheticParams, generate
    from mufin_lib.data.xc import read_xc
    from mufin_lib.model import ModelParams, MufinEncoder
    from mufin_lib.data.xc import own_label
    from tests.test_module1 import fake_embeddings

    generate(tmp_path / "syn", SyntheticParams(n_products=200, seed=1, with_images=False))
    ds = read_xc(tmp_path / "syn")
    table = BagTable(fake_embeddings(ds), 15)
    rng = np.random.default_rng(0)
    shortlist = np.stack([rng.permutation(ds.num_labels)[:20] for _ in range(len(ds.uids["train"]))])
    torch.manual_seed(0)
    enc = MufinEncoder(ModelParams(D=16, text_dim=16, image_dim=24))
    args = (table, ds.Y["train"], table.rows_of(ds.uids["train"]), table.rows_of(ds.uids["label"]), shortlist,
            own_label(ds, "train"))
    return enc, ds.num_labels, args


def test_ranker_resume_gives_the_same_weights(tmp_path):
    from mufin_lib.ranker import build_ranker, train_ranker
    from mufin_lib.stages.module4 import Module4Params

    enc, n_labels, args = _tiny_ranker_inputs(tmp_path)
    p = Module4Params(epochs=2, batch_size=32, warmup_steps=2)
    full, h_full = train_ranker(build_ranker(enc, n_labels, p), *args, tmp_path / "a", p, progress=False)
    train_ranker(build_ranker(enc, n_labels, p), *args, tmp_path / "b", p, stop_after=1, progress=False)
    assert not (tmp_path / "b" / "model.pt").exists()
    resumed, h_res = train_ranker(build_ranker(enc, n_labels, p), *args, tmp_path / "b", p, progress=False)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in h_full] == [h["loss"] for h in h_res]
    assert (tmp_path / "b" / "model.pt").exists()


def test_ranker_keeps_the_best_validation_epoch_and_stops_early(tmp_path):
    """A scripted validation score: the saved ranker is the best epoch's weights (not the last), a resume
    keeps that choice, and patience stops training once the score has not improved for that many epochs."""
    from mufin_lib.ranker import build_ranker, train_ranker
    from mufin_lib.stages.module4 import Module4Params

    enc, n_labels, args = _tiny_ranker_inputs(tmp_path)

    def scripted(scores):
        it = iter(scores)
        return lambda ranker: (lambda v: v if isinstance(v, dict) else {"val_fused_P@1": v})(next(it))

    p = Module4Params(epochs=4, batch_size=32, warmup_steps=2)
    r, h = train_ranker(build_ranker(enc, n_labels, p), *args, tmp_path / "a", p, progress=False,
                        validate=scripted([10.0, 30.0, 20.0, 30.0]))
    assert len(h) == 4 and [x["selected"] for x in h] == [False, True, False, False]  # ties: the earlier epoch
    best = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=False)
    saved = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    assert best["epoch"] == 2 and saved["epoch"] == 2
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])  # epochs differ
    for k in best["model"]:
        assert torch.equal(saved["model"][k], best["model"][k]) and torch.equal(r.state_dict()[k], best["model"][k]), k

    p2 = Module4Params(epochs=6, batch_size=32, warmup_steps=2, patience=2)
    _, h2 = train_ranker(build_ranker(enc, n_labels, p2), *args, tmp_path / "b", p2, progress=False,
                         validate=scripted([30.0, 20.0, 25.0, 99.0, 99.0, 99.0]))
    assert len(h2) == 3 and h2[0]["selected"]  # stopped after 2 epochs without a gain; epoch 4 never ran
    # resuming a run that had stopped early trains no further
    _, h3 = train_ranker(build_ranker(enc, n_labels, p2), *args, tmp_path / "b", p2, progress=False,
                         validate=scripted([]))
    assert len(h3) == 3 and torch.load(tmp_path / "b" / "model.pt", weights_only=False)["epoch"] == 1
    # equal P@1 (a small validation set): fused nDCG@5 decides
    p3 = Module4Params(epochs=3, batch_size=32, warmup_steps=2)
    _, h4 = train_ranker(build_ranker(enc, n_labels, p3), *args, tmp_path / "c", p3, progress=False,
                         validate=scripted([{"val_fused_P@1": 5.0, "val_fused_nDCG@5": n} for n in (1.0, 3.0, 2.0)]))
    assert [x["selected"] for x in h4] == [False, True, False]


@pytest.mark.slow
def test_ranker_under_torchrun_two_cpu_processes(tiny_run, tmp_path):
    """Module IV's training loop under torchrun with 2 processes (gloo) on the tiny run's stages 01-04."""
    from mufin_lib.artifacts import open_run
    from mufin_lib.ranker import load_ranker

    run_dir, env = tiny_run
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
                        "-m", "mufin_lib.stages.module4", "--run-dir", str(run_dir), "--out", str(tmp_path / "m4"),
                        "-p", "epochs=2", "-p", "05.batch_size=64", "-p", "val_points=50"], cwd=ROOT, env=dict(env, OMP_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"world_size": 2' in r.stdout and '"epochs": 2' in r.stdout
    run = open_run(run_dir)
    before = run.ranker
    after = load_ranker(tmp_path / "m4", run.module1, run.dataset.num_labels)
    assert not torch.equal(before.free, after.free)  # it trained (and is not the single-process result)
    assert all(torch.isfinite(p).all() for p in after.parameters())


def test_classifier_vectors_move_at_the_classifier_lr(tmp_path):
    """The one-vs-all vectors must learn, not stay the labels' embeddings. Adam moves each coordinate by about the
    lr per step, so one epoch (7 steps here) turns a vector by at most about lr * steps radians per unit of its scale:
    measured 1.1 deg at the authors' classifier lr of 5e-3 and 0.006 deg at the encoder's 5e-5. The bounds (0.5 deg,
    0.1 deg) sit between the two; a classifier left out of the optimizer, or trained at the encoder's lr, fails."""
    from mufin_lib.ranker import build_ranker, train_ranker
    from mufin_lib.stages.module4 import Module4Params

    enc, n_labels, args = _tiny_ranker_inputs(tmp_path)

    def mean_angle(classifier_lr, out):
        p = Module4Params(epochs=1, batch_size=32, warmup_steps=0, classifier_lr=classifier_lr, select_epoch=False)
        r = build_ranker(enc, n_labels, p)
        r.init_classifiers(np.zeros((n_labels, 16), np.float32))  # replaced by z_l^1 inside train_ranker
        from mufin_lib.bags import embed_rows
        z0 = torch.as_tensor(np.asarray(embed_rows(r.encoder, args[0], args[3]), np.float32))
        r, _ = train_ranker(r, *args, out, p, progress=False)
        moved = (r.free.detach() - z0).norm(dim=1) > 0  # the labels the epoch touched
        cos = torch.nn.functional.cosine_similarity(r.free.detach()[moved], z0[moved], dim=1).clamp(-1, 1)
        return float(torch.rad2deg(torch.acos(cos)).mean()), int(moved.sum())

    fast, n_fast = mean_angle(5e-3, tmp_path / "fast")
    slow, _ = mean_angle(0.0, tmp_path / "slow")  # 0: the ranker's lr, 5e-5
    print(f"mean angle after one epoch: {fast:.3f} deg at 5e-3, {slow:.4f} deg at 5e-5 ({n_fast} labels)")
    assert n_fast > 50
    assert fast > 0.5, fast
    assert slow < 0.1, slow


def test_training_point_votes_never_count_the_point_itself_and_merge_interleaves():
    import scipy.sparse as sp

    from mufin_lib.retrieval import TrainVotes, merge_shortlists

    keys = np.eye(4, dtype=np.float32)
    Y = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]], np.float32))
    votes = TrainVotes(keys, Y, neighbours=1)
    q = np.array([[1, 0.5, 0, 0], [0, 0, 0, 1]], np.float32)
    _, I = votes.search(q, 3)
    assert I[0].tolist() == [0, -1, -1] and sorted(I[1][:2].tolist()) == [3, 4]  # nearest point's labels
    _, I = votes.search(q, 3, exclude=np.array([0, -1]))  # query 0 is training point 0: its neighbour is point 1
    assert I[0].tolist() == [1, -1, -1]
    m = merge_shortlists(np.array([[10, 11, 12, 13]]), np.array([[20, 11, 21, -1]]), size=5, second_max=2)
    assert m[0].tolist() == [10, 20, 11, 21, 12]  # alternating by position, no repeats, at most 2 new from the second
    assert merge_shortlists(np.array([[1, 2]]), np.array([[3, 4]]), 4, 0)[0].tolist() == [1, 2, -1, -1]


def test_label_centroids_by_hand():
    from mufin_lib.retrieval import LabelCentroids

    keys = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    Y = sp.csr_matrix(np.array([[1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 1]], np.float32))  # label 1, 2: no points
    c = LabelCentroids(keys, Y)
    assert c.labels.tolist() == [0, 3]
    assert np.allclose(c.centroids, [[2 ** -0.5, 2 ** -0.5, 0], [2 ** -0.5, 0, 2 ** -0.5]])
    S, I = c.search(np.array([[0, 1, 0], [0, 0, 1]], np.float32), 3)
    assert I.tolist() == [[0, 3, -1], [3, 0, -1]] and np.isinf(S[:, 2]).all()


def test_alpha_by_label_frequency_bins_and_fuse_per_label():
    import scipy.sparse as sp

    from mufin_lib.fusion import fuse, label_bins, tune_alpha_bins
    from mufin_lib.metrics import inv_propensity

    Ytr = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0]], np.float32))  # label 0: 3 points, 1: 1, 2: 0
    bins, names = label_bins(Ytr, "1,3")
    assert bins.tolist() == [2, 1, 0] and names == ["0", "1-2", "3+"]
    with pytest.raises(ValueError):
        label_bins(Ytr, "3,1")
    sl = np.array([[0, 1, 2]])
    emb, rnk = np.array([[0.9, 0.1, 0.5]], np.float32), np.array([[0.0, 0.8, 0.2]], np.float32)
    S = fuse(emb, rnk, sl, np.array([1.0, 0.0, 0.5], np.float32), 3).toarray()[0] - 10
    assert np.allclose(S, [0.9, 0.8, 0.35])
    # truth label 1 (a tail label): only a low alpha in its bin ranks it first, and the head bin keeps its alpha
    Y = sp.csr_matrix(np.array([[0, 1, 0]], np.float32))
    emb, rnk = np.array([[0.5, 0.1, 0.2]], np.float32), np.array([[0.1, 0.9, 0.0]], np.float32)
    per_bin, _ = tune_alpha_bins(emb, rnk, sl, Y, None, inv_propensity(Ytr), bins, 3, alpha0=1.0)
    assert per_bin[1] < 0.6 and per_bin[2] == 1.0


def test_checkpoints_are_set_aside_when_the_inputs_change(tmp_path):
    """Stage 05 re-run after stage 04 made other shortlists must not resume a ranker trained on the old ones."""
    from mufin_lib.stages.module4 import Module4Params
    from mufin_lib.training import discard_stale_checkpoints, save_checkpoint

    p = Module4Params()
    discard_stale_checkpoints(tmp_path, p, log=lambda m: None, inputs="digest-a")  # a first run records its inputs
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", params=__import__("dataclasses").asdict(p), epoch=1)
    discard_stale_checkpoints(tmp_path, p, log=lambda m: None, inputs="digest-a")  # same inputs: resume
    assert (tmp_path / "checkpoints" / "last.pt").exists()
    said = []
    discard_stale_checkpoints(tmp_path, p, log=said.append, inputs="digest-b")
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    assert (tmp_path / "checkpoints.previous" / "last.pt").exists() and "other inputs" in said[0]


def test_pair_votes_log_popularity_and_terms_by_hand():
    from mufin_lib.fusion import added, fuse, log_popularity, tune_terms
    from mufin_lib.metrics import inv_propensity
    from mufin_lib.retrieval import TrainVotes

    keys = np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32)
    Y = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32))
    tv = TrainVotes(keys, Y, neighbours=2)
    v = tv.pair_votes(np.array([[1, 0]], np.float32), np.array([[1, 0, 2, 3, -1]]))
    # neighbours: point 0 (similarity 1) and point 1 (0.6); label 1 has both, label 0 point 0, labels 2, 3 none
    assert np.allclose(v, [[(1 + 0.6) / 2, 1 / 2, 0, 0, 0]], atol=1e-5)
    q2, sl2 = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32), np.array([[1, 0], [2, -1], [1, 2]])
    assert np.allclose(tv.pair_votes(q2, sl2, block=1), tv.pair_votes(q2, sl2))  # blocks of queries change nothing
    assert np.allclose(log_popularity(Y), np.log1p([1, 2, 1, 0]) / np.log1p(2))
    # truth label 2: the embedding and ranker prefer label 0, the votes say 2: only a vote weight ranks 2 first,
    # and where the votes say nothing the tuning keeps the weights at 0 (ties: the smaller weights)
    sl = np.array([[0, 1, 2]])
    emb, rnk = np.array([[0.9, 0.1, 0.5]], np.float32), np.array([[0.8, 0.0, 0.4]], np.float32)
    votes, prior = np.array([[0.0, 0.0, 0.9]], np.float32), np.zeros((1, 3), np.float32)
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0]], np.float32))
    ip = inv_propensity(Y)
    t = tune_terms(emb, rnk, sl, votes, prior, truth, None, ip)
    assert t["vote_weight"] > 0 and t["prior_weight"] == 0 and t["P@1"] == 100
    assert fuse(emb, rnk, sl, t["alpha"], 4, added(t, votes, prior)).toarray()[0].argmax() == 2
    t0 = tune_terms(emb, rnk, sl, np.zeros_like(votes), prior, sp.csr_matrix(np.array([[1, 0, 0, 0]], np.float32)), None, ip)
    assert t0["vote_weight"] == 0 and t0["prior_weight"] == 0 and t0["alpha"] == 1.0
    assert added(None, votes, prior) == 0.0

