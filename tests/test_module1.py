"""Module I: the loss on a hand-computed case, A_S padding invariance, balanced clusters, resume."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mufin_lib.data.synthetic import SyntheticParams, generate
from mufin_lib.data.xc import read_xc
from mufin_lib.encoders import Embeddings
from mufin_lib.model import ModelParams, MufinEncoder
from mufin_lib.module1 import balanced_2means, make_batches, module1_loss, train
from mufin_lib.stages.module1 import Module1Params

ROOT = Path(__file__).resolve().parent.parent


def test_loss_hand_computed():
    S = torch.tensor([[0.5, 0.7, 0.4], [0.1, 0.3, 0.6]])
    P = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    m, tau = 0.3, 0.1
    # row 0: hardest positive 0.5; negatives 0.7, 0.4 weighted by softmax([7, 4])
    w = [math.exp(7) / (math.exp(7) + math.exp(4)), math.exp(4) / (math.exp(7) + math.exp(4))]
    row0 = w[0] * (m + 0.7 - 0.5) + w[1] * (m + 0.4 - 0.5)
    # row 1: hardest positive is min(0.3, 0.6) = 0.3; one negative 0.1
    row1 = m + 0.1 - 0.3
    got = module1_loss(S, P, margin=m, k=2, tau=tau)
    assert abs(float(got) - (row0 + row1) / 2) < 1e-6
    # an excluded pair (the point's own product) is no negative
    excl = torch.zeros_like(P)
    excl[0, 1] = True
    got = module1_loss(S, P, excl, margin=m, k=2, tau=tau)
    assert abs(float(got) - ((m + 0.4 - 0.5) + row1) / 2) < 1e-6
    # k = 1: only the hardest negative
    assert abs(float(module1_loss(S, P, margin=m, k=1, tau=tau)) - ((m + 0.2) + row1) / 2) < 1e-6


def test_infonce_hand_computed_and_collapse_check():
    from mufin_lib.module1 import infonce_loss, label_cosine

    S = torch.tensor([[0.5, 0.7, 0.4], [0.1, 0.3, 0.6]])
    P = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    tau = 0.1
    row0 = -math.log(math.exp(5) / (math.exp(5) + math.exp(7) + math.exp(4)))
    row1 = -math.log((math.exp(3) + math.exp(6)) / (math.exp(1) + math.exp(3) + math.exp(6)))
    assert abs(float(infonce_loss(S, P, tau=tau)) - (row0 + row1) / 2) < 1e-5
    excl = torch.zeros_like(P)
    excl[0, 1] = True  # the point's own product: neither positive nor negative
    row0x = -math.log(math.exp(5) / (math.exp(5) + math.exp(4)))
    assert abs(float(infonce_loss(S, P, excl, tau=tau)) - (row0x + row1) / 2) < 1e-5
    # a collapsed embedding (all scores equal) costs log(#candidates / #positives) here, where the triplet loss is
    # exactly its margin and cannot tell collapse from a separating solution that also leaves the margin unmet
    flat = torch.full((2, 3), 0.99)
    assert abs(float(infonce_loss(flat, P, tau=tau)) - (math.log(3) + math.log(3 / 2)) / 2) < 1e-5
    assert abs(float(module1_loss(flat, P, margin=0.2)) - 0.2) < 1e-6
    rng = np.random.default_rng(0)
    assert label_cosine(rng.normal(size=(500, 32))) < 0.05
    assert label_cosine(rng.normal(size=(500, 32)) * 0.01 + 1.0) > 0.99


def test_random_positives_and_negatives_are_seeded():
    S = torch.rand(8, 12, generator=torch.Generator().manual_seed(0))
    P = torch.rand(8, 12, generator=torch.Generator().manual_seed(1)) > 0.7
    a = module1_loss(S, P, positives="random", negatives="random", generator=torch.Generator().manual_seed(3))
    b = module1_loss(S, P, positives="random", negatives="random", generator=torch.Generator().manual_seed(3))
    h = module1_loss(S, P)
    assert float(a) == float(b) and float(a) <= float(h) + 1e-6  # the hardest pair bounds a random one


def test_self_attention_ignores_padding():
    torch.manual_seed(0)
    model = MufinEncoder(ModelParams(D=16, text_dim=8, image_dim=12)).eval()
    text = torch.randn(1, 8)
    imgs = torch.randn(1, 2, 12)
    x_a, _, _ = model(text, torch.tensor([True]), imgs, torch.ones(1, 2, dtype=torch.bool))
    padded = torch.cat([imgs, 100 * torch.randn(1, 4, 12)], 1)
    mask = torch.tensor([[True, True, False, False, False, False]])
    x_b, X1, m = model(text, torch.tensor([True]), padded, mask)
    assert torch.allclose(x_a, x_b, atol=1e-6)
    # and in a batch beside a longer bag
    text2 = torch.cat([text, torch.randn(1, 8)])
    imgs2 = torch.cat([padded, torch.randn(1, 6, 12)])
    mask2 = torch.cat([mask, torch.ones(1, 6, dtype=torch.bool)])
    x_c, _, _ = model(text2, torch.tensor([True, True]), imgs2, mask2)
    assert torch.allclose(x_a, x_c[:1], atol=1e-6)
    # a bag without title: the title row is masked out
    x_d, _, _ = model(torch.randn(1, 8), torch.tensor([False]), imgs, torch.ones(1, 2, dtype=torch.bool))
    x_e, _, _ = model(torch.zeros(1, 8), torch.tensor([False]), imgs, torch.ones(1, 2, dtype=torch.bool))
    assert torch.allclose(x_d, x_e, atol=1e-6)


def test_balanced_clusters():
    X = np.random.default_rng(0).normal(size=(1000, 8))
    leaves = balanced_2means(X, 32, seed=1)
    sizes = [len(l) for l in leaves]
    assert max(sizes) <= 32 and min(sizes) >= 16
    assert sorted(np.concatenate(leaves).tolist()) == list(range(1000))
    again = balanced_2means(X, 32, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(leaves, again))
    # clusters are tight: mean within-leaf cosine far above random pairs
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    within = np.mean([(Xn[l] @ Xn[l].T).mean() for l in leaves])
    assert within > 3 * abs((Xn @ Xn.T).mean())
    batches = make_batches(1000, 128, np.random.default_rng(0), leaves)
    assert sum(len(b) for b in batches) == 1000 and len(batches) == 8


def fake_embeddings(ds, dim_t=16, dim_i=24, seed=0):
    """Random pre-embeddings (no encoder needed): resume and determinism do not depend on the signal."""
    rng = np.random.default_rng(seed)
    uids = ds.uids["label"]
    n = len(uids)
    text = rng.normal(size=(n, dim_t)).astype(np.float32)
    counts = rng.integers(0, 4, n)
    image = rng.normal(size=(counts.sum(), dim_i)).astype(np.float32)
    return Embeddings(uids, text, image, np.concatenate([[0], np.cumsum(counts)]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate(root, SyntheticParams(n_products=400, seed=3, with_images=False))
    ds = read_xc(root)
    return ds, fake_embeddings(ds)


def test_resume_gives_the_same_weights(tiny, tmp_path):
    ds, emb = tiny
    p = Module1Params(epochs=3, batch_size=64, cluster_after=1, recluster_every=1, cluster_leaf=16, warmup_steps=3, D=16)
    full, st_full = train(ds, emb, tmp_path / "a", p, progress=False)
    assert full.p == ModelParams(D=16, text_dim=16, image_dim=24)  # widths from the embeddings, D from the params
    part, st_part = train(ds, emb, tmp_path / "b", p, stop_after=2, progress=False)
    assert st_part.epoch == 2 and not (tmp_path / "b" / "model.pt").exists()
    resumed, st_res = train(ds, emb, tmp_path / "b", p, progress=False)
    assert st_res.epoch == 3 and (tmp_path / "b" / "model.pt").exists()
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in st_full.history] == [h["loss"] for h in st_res.history]
    assert all(np.isfinite(h["loss"]) for h in st_full.history)
    with pytest.raises(ValueError, match="other parameters"):
        train(ds, emb, tmp_path / "b", Module1Params(epochs=4, D=16), progress=False)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    """The same training loop under torchrun with 2 processes (gloo), on a small synthetic run directory."""
    env = dict(os.environ, MUFIN_CACHE_DIR=str(tmp_path / "cache"), MUFIN_RUNS_DIR=str(tmp_path / "runs"),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    prep = ("from pathlib import Path; from mufin_lib.data.prepare import prepare_dataset;"
            "from mufin_lib.stages.dataset import DatasetParams;"
            f"prepare_dataset(DatasetParams(size='300'), Path(r'{tmp_path}/run/dataset'))")
    subprocess.run([sys.executable, "-c", prep], cwd=ROOT, env=env, check=True, timeout=600)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                        "-m", "mufin_lib.stages.module1", "--run-dir", str(tmp_path / "run"), "-p", "epochs=2",
                        "-p", "batch_size=32", "-p", "cluster_after=1"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"world_size": 2' in r.stdout
    assert (tmp_path / "run" / "module1" / "model.pt").exists()


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_img")
    generate(root, SyntheticParams(n_products=60, seed=4))
    return read_xc(root)


def test_fine_tuning_trains_the_encoders(tiny_images, tmp_path):
    """freeze_encoders=False: raw titles and images go through E_T and E_V, whose weights change."""
    from mufin_lib.module1 import evaluate_model, load_model
    ds = tiny_images
    p = Module1Params(epochs=1, batch_size=16, freeze_encoders=False, encoder_lr=1e-3, cluster_after=5, val_fraction=0.1,
                      D=32, select_epoch=False)  # the trained epoch, not the untrained start select_epoch may keep
    model, st = train(ds, None, tmp_path, p, progress=False)
    from mufin_lib.encoders import load_image_encoder, load_text_encoder
    ref_t = load_text_encoder()
    ref_i = load_image_encoder()
    t0 = dict(ref_t.named_parameters())
    changed_t = any(not torch.equal(v, t0[k]) for k, v in model.text_model.named_parameters())
    i0 = dict(ref_i.model.named_parameters())
    changed_i = any(not torch.equal(v, i0[k]) for k, v in model.image_model.named_parameters() if k in i0)
    assert changed_t and changed_i
    assert np.isfinite(st.history[0]["loss"])
    again = load_model(tmp_path, ds)  # the saved model carries its fine-tuned encoders
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    from mufin_lib.bags import bag_source
    from mufin_lib.data.xc import Split
    from mufin_lib.metrics import inv_propensity
    test = Split("test", ds.uids["test"], ds.Y["test"], ds.filters["test"])
    ip = inv_propensity(ds.Y["train"])
    m = evaluate_model(again, bag_source(again, ds, None, p), test, ds.uids["label"], ip)
    # the reloaded model scores test as the trained one did (a folder that lost the tuned encoders would not)
    assert m == evaluate_model(model, bag_source(model, ds, None, p), test, ds.uids["label"], ip)


def test_a_damaged_checkpoint_is_set_aside_and_the_stage_starts_afresh(tiny, tmp_path, capsys):
    """A last.pt cut short (a full disk, a killed copy): named with its file, set aside, and training restarts to the
    same weights as an uninterrupted run (never a bare unpickling traceback)."""
    from mufin_lib.training import discard_stale_checkpoints

    ds, emb = tiny
    p = Module1Params(epochs=2, batch_size=64, cluster_after=1, warmup_steps=2, D=16)
    full, _ = train(ds, emb, tmp_path / "a", p, progress=False)
    train(ds, emb, tmp_path / "b", p, stop_after=1, progress=False)
    ckpt = tmp_path / "b" / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:300])  # cut short
    discard_stale_checkpoints(tmp_path / "b", p)  # what stage 02 does first
    out = capsys.readouterr().out
    assert f"{ckpt}: damaged" in out and "starts afresh" in out
    assert (tmp_path / "b" / "checkpoints.damaged" / "last.pt").exists() and not ckpt.exists()
    again, st = train(ds, emb, tmp_path / "b", p, progress=False)
    assert st.epoch == 2
    for (k, a), (_, b) in zip(full.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_mixed_precision_autocasts_training_on_a_gpu_only():
    """02/05.mixed_precision: bfloat16 autocast where the device is a GPU; a CPU (or the option off) trains in
    float32 as before."""
    import warnings

    import torch

    from mufin_lib.training import autocast

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": the context is still the GPU's
        on = autocast(torch.device("cuda"), True)
    assert isinstance(on, torch.autocast) and on.fast_dtype == torch.bfloat16 and on.device == "cuda"
    assert not isinstance(autocast(torch.device("cpu"), True), torch.autocast)
    assert not isinstance(autocast(torch.device("cuda"), False), torch.autocast)
