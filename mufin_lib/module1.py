"""Module I (spec §4): Siamese pre-training of the bottlenecks and A_S with hard mining.

Per batch of points, each with one sampled positive label, S is the cosine matrix between the points and
the batch's labels (multi-positive aware: every label of the batch that is a positive of a point counts
as one). Each point's loss takes its HARDEST in-batch positive (lowest S) against its top-k hardest
in-batch negatives, weighted by softmax(S_neg / tau):  sum_j w_j * max(0, margin + S_neg_j - S_pos).
After `cluster_after` epochs of random batches, batches are made of balanced recursive 2-means clusters
of the point embeddings (leaves of ~`cluster_leaf` points), re-clustered every `recluster_every` epochs,
so that in-batch negatives are hard.

Stage 02 is `train_stage(open_run(run_dir), params)`. It runs the same in a notebook (one process) and under
`torchrun --nproc_per_node N -m mufin_lib.module1 --run-dir runs/<id>` (DistributedDataParallel; gloo on CPU,
NCCL on GPUs), with the parameters notebook 02 has in that run: every rank builds the same batches and takes
its share of each, so in-batch negatives are per rank.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .bags import BagTable, bag_source, embed_rows, image_dim, to_device
from .config import choice, ranged
from .data.xc import XCDataset, carve_validation, own_label, validation_filter
from .encoders import Embeddings
from .finetune import build as build_finetune
from .metrics import evaluate, inv_propensity, topk_to_csr
from .model import ModelParams, MufinEncoder
from .paths import atomic_path, atomic_write
from .progress import tqdm
from .retrieval import exact_search
from .training import (dist_info, device, discard_stale_checkpoints, init_distributed, load_checkpoint, optimizer,
                       optimizer_step, report_rank0, save_checkpoint, torchrun_entry)


@dataclass
class Module1Params:
    """Stage 02's parameters; the defaults are the smoke size (notebook 02's parameters cell equals them)."""
    epochs: int = ranged(4, 1)  # paper: 200
    lr: float = ranged(2e-4, 0, lo_open=True)
    batch_size: int = ranged(256, 2)  # paper: 1024
    # triplet: the paper's margin loss on the hardest in-batch pairs (the paper preset). On data whose positives do
    # not look like the point (complementary co-purchases) it collapsed: every label vector within cosine 0.99 of every
    # other, the loss stuck at the margin (REPRODUCE.md, issue 15). infonce (the kit's default): multi-positive
    # InfoNCE over the batch's labels at `temperature`; a collapsed embedding scores log(#labels) there.
    loss: str = choice("infonce", "triplet")
    margin: float = ranged(0.2, 0)  # paper 0.2; authors' code 0.3
    num_negatives: int = ranged(10, 1)
    temperature: float = ranged(0.1, 0, lo_open=True)  # triplet: of the negatives' weights; infonce: of the loss
    warmup_steps: int = ranged(20, 0)  # LR warm-up iterations (paper: 1000)
    schedule: str = choice("cosine", "linear")  # cosine (paper) | linear (authors' code)
    cluster_after: int = ranged(2, 0)  # epochs of random batches before clustered ones (paper: ~20)
    cluster_leaf: int = ranged(32, 2)
    recluster_every: int = ranged(5, 1)
    weight_decay: float = ranged(0.01, 0)
    grad_clip: float = ranged(1.0, 0, lo_open=True)
    positives: str = choice("hardest", "random")  # triplet only: hardest | random (the "no +ve" ablation)
    negatives: str = choice("hardest", "random")  # triplet only: hardest | random (with random positives: "no +ve,-ve")
    val_fraction: float = ranged(0.15, 0, 1, hi_open=True)  # validation carved from train: this share ...
    val_max: int = ranged(2000, 0)  # ... but at most this many points (0: no cap)
    keep_top_k: int = ranged(15, 1)
    modalities: str = choice("text+image", "text", "image")  # text | image | text+image
    D: int = ranged(192, 1)  # working width of the model (authors' code: 192)
    freeze_encoders: bool = True  # False: fine-tune E_T and E_V too (the paper; slow on a CPU)
    encoder_lr: float = ranged(2e-5, 0)  # learning rate of the encoders when fine-tuned
    text_encoder: str = "all-MiniLM-L6-v2"
    image_encoder: str = "efficientnet-lite0"  # "": text only
    compare_modalities: str = "text"  # stage 02 also trains these twins with the same settings: "", text, image, text,image
    seed: int = 0


def carve(ds: XCDataset, params: Module1Params) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows) of train, as stage 02 carves them (later stages read them through the run)."""
    return carve_validation(ds.Y["train"].shape[0], params.val_fraction, params.seed, params.val_max)


# ---- loss -------------------------------------------------------------------------------------------

def module1_loss(S: torch.Tensor, P: torch.Tensor, exclude: torch.Tensor | None = None, margin: float = 0.2,
                 k: int = 10, tau: float = 0.1, positives: str = "hardest", negatives: str = "hardest",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """S: (B, C) cosines of points against the batch's labels; P: (B, C) True where a label is a positive
    of the point; exclude: (B, C) True where a pair is neither (the point's own product)."""
    P = P.bool()
    neg = ~P if exclude is None else ~P & ~exclude.bool()
    has_pos = P.any(1)
    if positives == "hardest":
        s_pos = S.masked_fill(~P, float("inf")).min(1).values
    else:  # a random positive
        r = torch.rand(S.shape, generator=generator).masked_fill(~P, -1.0)
        s_pos = S.gather(1, r.argmax(1, keepdim=True)).squeeze(1)
    k = min(k, S.shape[1])
    if negatives == "hardest":
        s_neg, _ = S.masked_fill(~neg, float("-inf")).topk(k, dim=1)
    else:  # k random negatives
        r = torch.rand(S.shape, generator=generator).masked_fill(~neg, -1.0)
        idx = r.topk(k, dim=1).indices
        s_neg = S.gather(1, idx).masked_fill(~neg.gather(1, idx), float("-inf"))
    valid = torch.isfinite(s_neg)
    w = torch.softmax((s_neg / tau).masked_fill(~valid, float("-inf")), dim=1).detach()
    w = torch.nan_to_num(w, nan=0.0)  # a row without negatives
    hinge = F.relu(margin + s_neg.masked_fill(~valid, 0.0) - s_pos.unsqueeze(1).masked_fill(~has_pos.unsqueeze(1), 0.0))
    per_point = (w * hinge * valid).sum(1)
    rows = has_pos & valid.any(1)
    return per_point[rows].mean() if rows.any() else S.sum() * 0.0


def infonce_loss(S: torch.Tensor, P: torch.Tensor, exclude: torch.Tensor | None = None, tau: float = 0.1) -> torch.Tensor:
    """Multi-positive InfoNCE: per point, -log(sum_pos e^{S/tau} / sum_{pos and neg} e^{S/tau}); the point's own
    product (exclude) is neither. Points without a positive are skipped."""
    P = P.bool()
    keep = torch.ones_like(P) if exclude is None else ~exclude.bool()
    logits = (S / tau).masked_fill(~keep, float("-inf"))
    rows = (P & keep).any(1)
    if not rows.any():
        return S.sum() * 0.0
    num = torch.logsumexp(logits.masked_fill(~P, float("-inf")), dim=1)
    return (torch.logsumexp(logits, dim=1) - num)[rows].mean()


def label_cosine(Z: np.ndarray, n: int = 1000, seed: int = 0) -> float:
    """Mean pairwise cosine of (a sample of) label vectors: near 1 means the embedding has collapsed."""
    Z = np.asarray(Z, np.float32)
    Z = Z[np.random.default_rng(seed).choice(len(Z), min(n, len(Z)), replace=False)]
    Z = Z / (np.linalg.norm(Z, axis=1, keepdims=True) + 1e-12)
    C = Z @ Z.T
    m = len(Z)
    return float((C.sum() - np.trace(C)) / max(m * (m - 1), 1))


# ---- clustered batches ------------------------------------------------------------------------------

def balanced_2means(X: np.ndarray, leaf: int, seed: int, iters: int = 8) -> list[np.ndarray]:
    """Recursive balanced 2-means on unit vectors: every split halves a set (sizes differ by at most one),
    until sets hold at most `leaf` points. Deterministic in (X, leaf, seed)."""
    rng = np.random.default_rng(seed)
    X = X / (np.linalg.norm(X, axis=1, keepdims=True) + 1e-12)
    leaves, stack = [], [np.arange(len(X))]
    while stack:
        idx = stack.pop()
        if len(idx) <= leaf:
            leaves.append(idx)
            continue
        sub = X[idx]
        c = sub[rng.choice(len(idx), 2, replace=False)]
        for _ in range(iters):
            order = np.argsort(-(sub @ c[0] - sub @ c[1]), kind="stable")
            a, b = order[: len(idx) // 2], order[len(idx) // 2:]
            c = np.stack([sub[a].mean(0), sub[b].mean(0)])
            c /= np.linalg.norm(c, axis=1, keepdims=True) + 1e-12
        stack += [idx[b], idx[a]]
    return leaves


def make_batches(n: int, batch_size: int, rng: np.random.Generator, clusters: list[np.ndarray] | None = None):
    """Random batches, or whole clusters in random order packed into batches."""
    if clusters is None:
        order = rng.permutation(n)
    else:
        order = np.concatenate([clusters[i] for i in rng.permutation(len(clusters))])
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


# ---- embedding and evaluation -----------------------------------------------------------------------

def evaluate_embeddings(Xq: np.ndarray, Z: np.ndarray, Y: sp.csr_matrix, filt: np.ndarray, inv_p: np.ndarray,
                        k: int = 5) -> dict:
    extra = int(np.bincount(filt[:, 0]).max()) if len(filt) else 0
    S, I = exact_search(Xq, Z, k + extra)
    return evaluate(topk_to_csr(I, S, Z.shape[0]), Y, inv_p, filt)


@dataclass
class Module1State:
    epoch: int = 0
    history: list = field(default_factory=list)  # per epoch: loss, seconds, val metrics


def train(ds: XCDataset, emb: Embeddings | None, out_dir: str | Path, params: Module1Params = Module1Params(),
          resume: bool = True, stop_after: int | None = None, progress: bool = True) -> tuple[MufinEncoder, Module1State]:
    """Train (or resume) Module I; checkpoints every epoch to out_dir/checkpoints/last.pt (atomically)."""
    init_distributed()
    rank, world = dist_info()
    out_dir = Path(out_dir)
    dev = device()
    torch.manual_seed(params.seed)
    # the pre-embedding widths of the encoders (the cached ones of stage 01; without them, MiniLM's and Lite0's)
    mp = ModelParams(D=params.D, **({} if emb is None else {"text_dim": emb.text.shape[1], "image_dim": image_dim(emb)}))
    if params.freeze_encoders:
        table = BagTable(emb, params.keep_top_k, params.modalities)
    model = MufinEncoder(mp)
    groups = [{"params": list(model.parameters()), "lr": params.lr}]
    if not params.freeze_encoders:  # raw titles and images through trainable encoders
        model, table = build_finetune(ds, model, params.text_encoder, params.image_encoder, params.keep_top_k,
                                      params.modalities)
        groups = [{"params": list(model.mufin.parameters()), "lr": params.lr},
                  {"params": model.encoder_parameters(), "lr": params.encoder_lr}]
    model = model.to(dev)
    fit, val = carve(ds, params)
    val_filt = validation_filter(ds, fit, val)
    Y = sp.csr_matrix(ds.Y["train"] > 0)
    p_rows = table.rows_of(ds.uids["train"])
    l_rows = table.rows_of(ds.uids["label"])
    own = own_label(ds, "train")
    inv_p = inv_propensity(ds.Y["train"])
    steps = math.ceil(len(fit) / params.batch_size)
    opt, sched = optimizer(groups, params, params.epochs * steps)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    state, clusters = Module1State(), None
    ckpt = out_dir / "checkpoints" / "last.pt"
    c = load_checkpoint(ckpt, params, map_location=dev) if resume else None
    if c is not None:
        model.load_state_dict(c["model"]); opt.load_state_dict(c["opt"]); sched.load_state_dict(c["sched"])
        state, clusters = Module1State(c["epoch"], c["history"]), c["clusters"]
    for epoch in range(state.epoch, params.epochs):
        t0 = time.time()
        # per-epoch seeds: a resumed run draws exactly what an uninterrupted one would
        rng = np.random.default_rng([params.seed, epoch])
        gen = torch.Generator().manual_seed(params.seed * 100_003 + epoch)
        torch.manual_seed(params.seed * 100_003 + epoch)
        if epoch >= params.cluster_after and (clusters is None or (epoch - params.cluster_after) % params.recluster_every == 0):
            Xf = embed_rows(model, table, p_rows[fit])
            clusters = balanced_2means(Xf, params.cluster_leaf, params.seed + epoch)
        batches = make_batches(len(fit), params.batch_size, rng, clusters if epoch >= params.cluster_after else None)
        model.train()
        losses = []
        bar = tqdm(batches, desc=f"module I epoch {epoch + 1}/{params.epochs}", disable=not progress or rank != 0,
                   mininterval=2, leave=False)
        for b in bar:
            pts = fit[b]
            # one sampled positive per point: the batch's labels
            pos = np.array([Y.indices[Y.indptr[i] + rng.integers(Y.indptr[i + 1] - Y.indptr[i])] for i in pts])
            labels = np.unique(pos)
            mine = slice(rank, None, world)  # this rank's share of the batch's points
            pts_r = pts[mine]
            P = torch.from_numpy(Y[pts_r][:, labels].toarray() > 0)
            excl = torch.from_numpy(own[pts_r][:, None] == labels[None, :])
            rows = np.concatenate([p_rows[pts_r], l_rows[labels]])
            v = ddp(*to_device(table.batch(rows), dev))[0]
            x, z = v[: len(pts_r)], v[len(pts_r):]
            if params.loss == "infonce":
                loss = infonce_loss(x @ z.T, P.to(dev), excl.to(dev), params.temperature)
            else:
                loss = module1_loss(x @ z.T, P.to(dev), excl.to(dev), params.margin, params.num_negatives,
                                    params.temperature, params.positives, params.negatives, gen)
            losses.append(optimizer_step(loss, opt, sched, model.parameters(), params.grad_clip))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 2),
               "lr": sched.get_last_lr()[0], "clustered": epoch >= params.cluster_after}
        if rank == 0 and len(val):
            Z = embed_rows(model, table, l_rows)
            m = evaluate_embeddings(embed_rows(model, table, p_rows[val]), Z, Y[val], val_filt, inv_p)
            rec.update({f"val_{k}": v for k, v in m.items() if k in ("P@1", "P@3", "P@5", "nDCG@5", "PSP@5")})
            rec["label_cosine"] = round(label_cosine(Z), 4)  # collapse check: near 1, every label looks alike
        state.history.append(rec)
        state.epoch = epoch + 1
        if rank == 0:
            save_checkpoint(ckpt, model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                            epoch=state.epoch, history=state.history, clusters=clusters, params=asdict(params),
                            model_params=asdict(mp))
        if stop_after is not None and state.epoch >= stop_after:
            break
    if rank == 0 and state.epoch >= params.epochs:
        with atomic_path(out_dir / "model.pt") as tmp:
            torch.save({"model": model.state_dict(), "params": asdict(params), "model_params": asdict(mp)}, tmp)
        with atomic_write(out_dir / "history.json") as f:
            json.dump(state.history, f, indent=2)
    return model, state


def _model_file(out_dir: str | Path) -> Path:
    f = Path(out_dir) / "model.pt"
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing; run notebook 02_module1_siamese first (mufin run --only 01,02)")
    return f


def load_params(out_dir: str | Path) -> Module1Params:
    """The parameters a trained Module I was trained with (saved with the model)."""
    return Module1Params(**torch.load(_model_file(out_dir), map_location="cpu", weights_only=False)["params"])


def load_model(out_dir: str | Path, ds: XCDataset | None = None):
    """The trained Module I model (with its fine-tuned encoders when they were trained: pass ds)."""
    c = torch.load(_model_file(out_dir), map_location="cpu", weights_only=False)
    m = MufinEncoder(ModelParams(**c["model_params"]))
    p = Module1Params(**c["params"])
    if not p.freeze_encoders:
        if ds is None:
            raise ValueError(f"{out_dir}/model.pt: the encoders were fine-tuned; load_model needs the dataset (ds=...)")
        m, _ = build_finetune(ds, m, p.text_encoder, p.image_encoder, p.keep_top_k, p.modalities)
    m.load_state_dict(c["model"])
    return m.eval()


def module1_scores(model, ds: XCDataset, emb: Embeddings | None, split: str, params: Module1Params,
                   k: int = 5) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """(scores, truth, filter) of a split ('val', carved from train, or 'test') by exact nearest labels by
    <x^1, z_l^1>: the top k plus room for the filtered labels of each point."""
    table = bag_source(model, ds, emb, params)
    Z = embed_rows(model, table, table.rows_of(ds.uids["label"]))
    if split == "val":
        fit, val = carve(ds, params)
        uids, Y, filt = [ds.uids["train"][i] for i in val], ds.Y["train"][val], validation_filter(ds, fit, val)
    else:
        uids, Y, filt = ds.uids[split], ds.Y[split], ds.filters[split]
    extra = int(np.bincount(filt[:, 0]).max()) if len(filt) else 0
    S, I = exact_search(embed_rows(model, table, table.rows_of(uids)), Z, k + extra)
    return topk_to_csr(I, S, Z.shape[0]), Y, filt


def evaluate_model(model, ds: XCDataset, emb: Embeddings | None, split: str, params: Module1Params,
                   inv_p: np.ndarray | None = None) -> dict:
    """P@k etc. of exact nearest labels by <x^1, z_l^1> on 'val' (carved from train) or 'test'."""
    inv_p = inv_propensity(ds.Y["train"]) if inv_p is None else inv_p
    scores, Y, filt = module1_scores(model, ds, emb, split, params)
    return evaluate(scores, Y, inv_p, filt)


# ---- stage 02 ---------------------------------------------------------------------------------------

def variants(params: Module1Params) -> dict[str, Module1Params]:
    """The models stage 02 trains: first the run's Module I (its `modalities`; text alone without an image encoder),
    then each twin of `compare_modalities` under module1/variant_<modalities>/ (twins that need images are left out
    without an image encoder)."""
    main = params.modalities if params.image_encoder else "text"
    twins = [m.strip() for m in params.compare_modalities.split(",") if m.strip()]
    for m in twins:
        if m not in ("text", "image", "text+image"):
            raise ValueError(f"compare_modalities '{params.compare_modalities}': expected a comma-separated list of "
                             "text, image, text+image")
    names = [main] + [m for m in twins if m != main and (params.image_encoder or m == "text")]
    return {m: replace(params, modalities=m) for m in dict.fromkeys(names)}


def variant_dir(stage: Path, name: str, params: Module1Params) -> Path:
    return stage if name == next(iter(variants(params))) else stage / f"variant_{name.replace('+', '_')}"


@dataclass
class Module1Result:
    table: "object"  # pandas DataFrame: Module I (each variant) on val and test, beside the frozen encoders
    histories: dict  # variant -> per-epoch loss and validation metrics
    timing: dict  # variant -> total and per-epoch seconds
    summary: dict  # what metrics.json reports


def train_stage(run, params: Module1Params, progress: bool = True) -> Module1Result:
    """Stage 02 on an open run: train each variant (resuming from its checkpoints), evaluate it on validation and
    test beside the frozen encoders of stage 01. The main variant is the run's Module I (run_dir/module1)."""
    import pandas as pd

    from .peers import frozen_nn

    ds, stage = run.dataset, run.stage("module1")
    emb = run.embeddings_for(params.text_encoder, params.image_encoder)
    results, histories, timing = [], {}, {}
    for name, p in variants(params).items():
        out = variant_dir(stage, name, params)
        discard_stale_checkpoints(out, p)
        t0 = time.time()
        model, state = train(ds, emb, out, p, progress=progress)
        histories[name] = state.history
        timing[name] = {"total_s": round(time.time() - t0, 1),
                        "s_per_epoch": round(sum(h["seconds"] for h in state.history) / max(1, len(state.history)), 2)}
        for split in ("val", "test"):
            results.append({"data": run.data_name, "model": f"Module I ({name})", "split": split,
                            **evaluate_model(model, ds, emb, split, p)})
    frozen = [{"data": run.data_name, "model": f"frozen encoders ({m})", "split": "test",
               **{k: v for k, v in frozen_nn(ds, emb, "test", m).items() if k not in ("modality", "split")}}
              for m in (["text", "image", "text+image"] if params.image_encoder else ["text"])]
    table = pd.DataFrame(frozen + results)
    test = table[table.split == "test"].set_index("model")
    main = next(iter(histories))
    summary = {"data": run.data_title, "synthetic": run.synthetic, "timing": timing,
               "results": table.to_dict("records"), "history": histories,
               "module1_minus_frozen_P@1": round(test.loc[f"Module I ({main})", "P@1"]
                                                 - test.loc[f"frozen encoders ({main})", "P@1"], 4)}
    for twin in ("text", "image"):
        if {twin, "text+image"} <= set(histories):
            summary[f"text+image_minus_{twin}_P@1"] = round(test.loc["Module I (text+image)", "P@1"]
                                                            - test.loc[f"Module I ({twin})", "P@1"], 4)
    return Module1Result(table, histories, timing, summary)


def main(argv=None) -> int:
    """torchrun entry: torchrun --nproc_per_node N -m mufin_lib.module1 --run-dir runs/<id> [-p key=value ...]
    Trains the run's Module I with the parameters notebook 02 has in that run (run.json: preset, overrides),
    -p overrides applied by the runner's parser; then `mufin run --resume <id> --only 02,...` picks it up."""
    run, params, out = torchrun_entry("mufin_lib.module1", "02", Module1Params, "module1", argv)
    name, p = next(iter(variants(params).items()))
    _, state = train(run.dataset, run.embeddings_for(p.text_encoder, p.image_encoder),
                     out or variant_dir(run.stage("module1"), name, params), p)
    report_rank0(epochs=state.epoch, variant=name, last=state.history[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
