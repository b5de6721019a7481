"""Module I (spec §4): Siamese pre-training of the bottlenecks and A_S.

Per batch of points, each with one sampled positive label, S is the cosine matrix between the points and the
batch's labels (multi-positive aware: every label of the batch that is a positive of a point counts as one).
Two losses (`params.loss`):
- "infonce" (the kit's default): multi-positive InfoNCE over the batch's labels at a temperature; a collapsed
  embedding (every label alike) costs log(#labels / #positives) there, so collapse cannot hide.
- "triplet" (the paper's): each point's HARDEST in-batch positive (lowest S) against its top-k hardest in-batch
  negatives, weighted by softmax(S_neg / tau): sum_j w_j * max(0, margin + S_neg_j - S_pos). On complementary
  co-purchases it collapsed (REPRODUCE.md); `label_cosine` per epoch shows it.
After `cluster_after` epochs of random batches, batches are made of balanced recursive 2-means clusters of the
point embeddings (leaves of ~`cluster_leaf` points), re-clustered every `recluster_every` epochs, so that in-batch
negatives are hard.

`train` runs the same in one process and under torchrun (DistributedDataParallel; gloo on CPU, NCCL on GPUs):
every rank builds the same batches and takes its share of each, so in-batch negatives are per rank. `params` is
stage 02's Module1Params (mufin_lib.stages.module1), read by its fields.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .bags import BagTable, embed_rows, image_dim, to_device
from .data.xc import XCDataset, carve_validation, own_label, validation_filter
from .encoders import Embeddings
from .finetune import build as build_finetune
from .layout import CHECKPOINTS, HISTORY, MODEL
from .metrics import evaluate, filter_room, inv_propensity, topk_to_csr
from .model import ModelParams, MufinEncoder
from .paths import atomic_path, atomic_write
from .progress import tqdm
from .retrieval import exact_search
from .training import (autocast, dist_info, device, init_distributed, load_checkpoint, optimizer, optimizer_step,
                       save_checkpoint)

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
    S, I = exact_search(Xq, Z, k + filter_room(filt))
    return evaluate(topk_to_csr(I, S, Z.shape[0]), Y, inv_p, filt)


@dataclass
class Module1State:
    epoch: int = 0
    history: list = field(default_factory=list)  # per epoch: loss, seconds, val metrics
    start: dict | None = None  # validation metrics of the untrained model (select_epoch's epoch-0 candidate)
    selected_epoch: int | None = None  # the epoch model.pt holds (0: the untrained start); None: the last


@dataclass
class _Setup:
    """What one training of Module I works on (built once by `_setup`)."""
    model: torch.nn.Module
    ddp: torch.nn.Module
    table: object  # BagTable (frozen encoders) or RawBags (fine-tuned)
    model_params: ModelParams
    opt: object
    sched: object
    fit: np.ndarray
    val: np.ndarray
    val_filter: np.ndarray
    Y: sp.csr_matrix
    point_rows: np.ndarray
    label_rows: np.ndarray
    own: np.ndarray
    inv_p: np.ndarray
    dev: torch.device


def _setup(ds: XCDataset, emb: Embeddings | None, params) -> _Setup:
    dev = device()
    torch.manual_seed(params.seed)
    # the pre-embedding widths of the encoders (the cached ones of stage 01; without them, MiniLM's and Lite0's)
    mp = ModelParams(D=params.D, self_attention=params.self_attention,
                     **({} if emb is None else {"text_dim": emb.text.shape[1], "image_dim": image_dim(emb)}))
    model = MufinEncoder(mp)
    if params.freeze_encoders:
        table = BagTable(emb, params.keep_top_k, params.modalities)
        groups = [{"params": list(model.parameters()), "lr": params.lr}]
    else:  # raw titles and images through trainable encoders
        model, table = build_finetune(ds, model, params.text_encoder, params.image_encoder, params.keep_top_k,
                                      params.modalities)
        groups = [{"params": list(model.mufin.parameters()), "lr": params.lr},
                  {"params": model.encoder_parameters(), "lr": params.encoder_lr}]
    model = model.to(dev)
    fit, val = carve_validation(ds.Y["train"].shape[0], params.val_fraction, params.seed, params.val_max,
                                getattr(params, "fit_share", 1.0))
    opt, sched = optimizer(groups, params, params.epochs * math.ceil(len(fit) / params.batch_size))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if dist_info()[1] > 1 else model
    return _Setup(model, ddp, table, mp, opt, sched, fit, val, validation_filter(ds, fit, val),
                  sp.csr_matrix(ds.Y["train"] > 0), table.rows_of(ds.uids["train"]), table.rows_of(ds.uids["label"]),
                  own_label(ds, "train"), inv_propensity(ds.Y["train"]), dev)


def _batch_loss(t: _Setup, pts: np.ndarray, rng: np.random.Generator, gen: torch.Generator, params) -> torch.Tensor:
    """The loss of one batch of fit points (this rank's share), each with one sampled positive label."""
    rank, world = dist_info()
    Y = t.Y
    pos = np.array([Y.indices[Y.indptr[i] + rng.integers(Y.indptr[i + 1] - Y.indptr[i])] for i in pts])
    labels = np.unique(pos)  # the batch's labels
    pts_r = pts[slice(rank, None, world)]
    P = torch.from_numpy(Y[pts_r][:, labels].toarray() > 0).to(t.dev)
    excl = torch.from_numpy(t.own[pts_r][:, None] == labels[None, :]).to(t.dev)
    rows = np.concatenate([t.point_rows[pts_r], t.label_rows[labels]])
    v = t.ddp(*to_device(t.table.batch(rows), t.dev))[0]
    x, z = v[: len(pts_r)], v[len(pts_r):]
    if params.loss == "infonce":
        return infonce_loss(x @ z.T, P, excl, params.temperature)
    return module1_loss(x @ z.T, P, excl, params.margin, params.num_negatives, params.temperature,
                        params.positives, params.negatives, gen)


def _epoch(t: _Setup, epoch: int, clusters, params, progress: bool) -> tuple[dict, list | None]:
    """One epoch: (its record, the clusters its batches came from)."""
    t0 = time.time()
    # per-epoch seeds: a resumed run draws exactly what an uninterrupted one would
    rng = np.random.default_rng([params.seed, epoch])
    gen = torch.Generator().manual_seed(params.seed * 100_003 + epoch)
    torch.manual_seed(params.seed * 100_003 + epoch)
    clustered = epoch >= params.cluster_after
    if clustered and (clusters is None or (epoch - params.cluster_after) % params.recluster_every == 0):
        clusters = balanced_2means(embed_rows(t.model, t.table, t.point_rows[t.fit]), params.cluster_leaf,
                                   params.seed + epoch)
    batches = make_batches(len(t.fit), params.batch_size, rng, clusters if clustered else None)
    t.model.train()
    losses = []
    bar = tqdm(batches, desc=f"module I epoch {epoch + 1}/{params.epochs}",
               disable=not progress or dist_info()[0] != 0, mininterval=2, leave=False)
    for b in bar:
        with autocast(t.dev, params.mixed_precision):
            loss = _batch_loss(t, t.fit[b], rng, gen, params)
        losses.append(optimizer_step(loss, t.opt, t.sched, t.model.parameters(), params.grad_clip))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 2),
            "lr": t.sched.get_last_lr()[0], "clustered": clustered}, clusters


def _validate(t: _Setup) -> dict:
    """Validation metrics of the epoch's model, and the collapse check (near 1: every label looks alike)."""
    Z = embed_rows(t.model, t.table, t.label_rows)
    m = evaluate_embeddings(embed_rows(t.model, t.table, t.point_rows[t.val]), Z, t.Y[t.val], t.val_filter, t.inv_p)
    return {**{f"val_{k}": v for k, v in m.items() if k in ("P@1", "P@3", "P@5", "nDCG@5", "PSP@5")},
            "label_cosine": round(label_cosine(Z), 4)}


def _selected(state: Module1State) -> tuple[int, float]:
    """(epoch, val P@1) of the best candidate so far: the untrained start (epoch 0) and every trained epoch; a tie
    keeps the earlier (fewer epochs)."""
    cands = ([(0, state.start["val_P@1"])] if state.start else []) + \
            [(h["epoch"], h["val_P@1"]) for h in state.history if "val_P@1" in h]
    return max(cands, key=lambda c: (c[1], -c[0])) if cands else (state.epoch, float("nan"))


def train(ds: XCDataset, emb: Embeddings | None, out_dir: str | Path, params, resume: bool = True,
          stop_after: int | None = None, progress: bool = True) -> tuple[MufinEncoder, Module1State]:
    """Train (or resume) Module I; checkpoints every epoch to out_dir/checkpoints/last.pt (atomically), and writes
    out_dir/model.pt and history.json once every epoch is done. With params.select_epoch, model.pt holds the epoch
    with the best validation P@1, the untrained start (the frozen features through the initial layers) among the
    candidates, so that a Module I that learns nothing ends where it started (checkpoints/best.pt keeps it)."""
    init_distributed()
    rank = dist_info()[0]
    out_dir = Path(out_dir)
    t = _setup(ds, emb, params)
    state, clusters = Module1State(), None
    ckpt, best = out_dir / CHECKPOINTS / "last.pt", out_dir / CHECKPOINTS / "best.pt"
    select = params.select_epoch and len(t.val) > 0
    c = load_checkpoint(ckpt, params, map_location=t.dev) if resume else None
    if c is not None:
        t.model.load_state_dict(c["model"]); t.opt.load_state_dict(c["opt"]); t.sched.load_state_dict(c["sched"])
        state, clusters = Module1State(c["epoch"], c["history"], c.get("start")), c["clusters"]
    if select and state.epoch == 0 and rank == 0:
        state.start = _validate(t)
        save_checkpoint(best, model=t.model.state_dict(), epoch=0)
    for epoch in range(state.epoch, params.epochs):
        rec, clusters = _epoch(t, epoch, clusters, params, progress)
        if rank == 0 and len(t.val):
            rec.update(_validate(t))
        state.history.append(rec)
        state.epoch = epoch + 1
        if rank == 0:
            if select and _selected(state)[0] == state.epoch:
                save_checkpoint(best, model=t.model.state_dict(), epoch=state.epoch)
            save_checkpoint(ckpt, model=t.model.state_dict(), opt=t.opt.state_dict(), sched=t.sched.state_dict(),
                            epoch=state.epoch, history=state.history, clusters=clusters, params=asdict(params),
                            model_params=asdict(t.model_params), start=state.start)
        if stop_after is not None and state.epoch >= stop_after:
            break
    if rank == 0 and state.epoch >= params.epochs:
        if select:
            state.selected_epoch = _selected(state)[0]
            t.model.load_state_dict(torch.load(best, map_location=t.dev, weights_only=False)["model"])
        with atomic_path(out_dir / MODEL) as tmp:
            torch.save({"model": t.model.state_dict(), "params": asdict(params), "model_params": asdict(t.model_params),
                        "selected_epoch": state.selected_epoch, "start": state.start}, tmp)
        with atomic_write(out_dir / HISTORY) as f:
            json.dump(state.history, f, indent=2)
    return t.model, state


def _model_file(out_dir: str | Path) -> Path:
    f = Path(out_dir) / MODEL
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing (stage 02, module1, trains Module I)")
    return f


def saved_params(out_dir: str | Path) -> dict:
    """The parameters a trained Module I was trained with (saved with the model), as a dict."""
    return torch.load(_model_file(out_dir), map_location="cpu", weights_only=False)["params"]


def load_model(out_dir: str | Path, ds: XCDataset | None = None):
    """The trained Module I model (with its fine-tuned encoders when they were trained: pass ds)."""
    c = torch.load(_model_file(out_dir), map_location="cpu", weights_only=False)
    m = MufinEncoder(ModelParams(**c["model_params"]))
    p = c["params"]
    if not p["freeze_encoders"]:
        if ds is None:
            raise ValueError(f"{out_dir}/model.pt: the encoders were fine-tuned; load_model needs the dataset (ds=...)")
        m, _ = build_finetune(ds, m, p["text_encoder"], p["image_encoder"], p["keep_top_k"], p["modalities"])
    m.load_state_dict(c["model"])
    return m.eval()


def module1_scores(model, table, uids: list, label_uids: list, k: int) -> sp.csr_matrix:
    """Scores of the top k labels by exact nearest-label search on <x^1, z_l^1>, for the products `uids`."""
    Z = embed_rows(model, table, table.rows_of(label_uids))
    S, I = exact_search(embed_rows(model, table, table.rows_of(uids)), Z, k)
    return topk_to_csr(I, S, Z.shape[0])


def evaluate_model(model, table, split, label_uids: list, inv_p: np.ndarray, k: int = 5) -> dict:
    """P@k etc. of Module I alone (exact nearest labels) on a split (data.xc.Split: uids, truth, filter)."""
    return evaluate(module1_scores(model, table, split.uids, label_uids, k + filter_room(split.filter)), split.Y, inv_p,
                    split.filter)
