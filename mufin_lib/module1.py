"""Module I (spec §4): Siamese pre-training of the bottlenecks and A_S with hard mining.

Per batch of points, each with one sampled positive label, S is the cosine matrix between the points and
the batch's labels (multi-positive aware: every label of the batch that is a positive of a point counts
as one). Each point's loss takes its HARDEST in-batch positive (lowest S) against its top-k hardest
in-batch negatives, weighted by softmax(S_neg / tau):  sum_j w_j * max(0, margin + S_neg_j - S_pos).
After `cluster_after` epochs of random batches, batches are made of balanced recursive 2-means clusters
of the point embeddings (leaves of ~`cluster_leaf` points), re-clustered every `recluster_every` epochs,
so that in-batch negatives are hard.

Runs the same in a notebook (one process) and under `torchrun --nproc_per_node N -m mufin_lib.module1`
(DistributedDataParallel; gloo on CPU, NCCL on GPUs): every rank builds the same batches and takes its
share of each, so in-batch negatives are per rank.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .bags import BagTable
from .finetune import build as build_finetune, to_device
from .data.xc import XCDataset, carve_validation, validation_filter
from .encoders import Embeddings
from .metrics import evaluate, inv_propensity, topk_to_csr
from .model import ModelParams, MufinEncoder
from .paths import atomic_path, atomic_write
from .retrieval import exact_search


@dataclass
class Module1Params:
    epochs: int = 6  # paper: 200
    lr: float = 2e-4
    batch_size: int = 256  # paper: 1024
    margin: float = 0.2  # paper 0.2; authors' code 0.3
    num_negatives: int = 10
    temperature: float = 0.1
    warmup_steps: int = 20  # LR warm-up iterations (paper: 1000)
    schedule: str = "cosine"  # cosine (paper) | linear (authors' code)
    cluster_after: int = 2  # epochs of random batches before clustered ones (paper: ~20)
    cluster_leaf: int = 32
    recluster_every: int = 5
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    positives: str = "hardest"  # hardest | random (the "no +ve" ablation)
    negatives: str = "hardest"  # hardest | random (with random positives: "no +ve,-ve")
    val_fraction: float = 0.1
    keep_top_k: int = 15
    modalities: str = "text+image"  # text | image | text+image
    freeze_encoders: bool = True  # False: fine-tune E_T and E_V too (the paper; slow on a CPU)
    encoder_lr: float = 2e-5  # learning rate of the encoders when fine-tuned
    text_encoder: str = "all-MiniLM-L6-v2"  # used when fine-tuning (frozen runs read the cached pre-embeddings)
    image_encoder: str = "efficientnet-lite0"
    seed: int = 0


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


def optimizer_step(loss, opt, sched, parameters, clip: float) -> float:
    """One update, shared by Modules I and IV: backward, clip, step, schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, clip)
    opt.step()
    sched.step()
    return loss.item()


def lr_lambda(schedule: str, warmup: int, total: int):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t))) if schedule == "cosine" else max(0.0, 1 - t)
    return f


# ---- distributed ------------------------------------------------------------------------------------

def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> None:
    """Under torchrun (WORLD_SIZE > 1): one process group; NCCL when every rank has a GPU, else gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


# ---- embedding and evaluation -----------------------------------------------------------------------

@torch.no_grad()
def embed_rows(model: MufinEncoder, table: BagTable, rows: np.ndarray, batch: int = 1024) -> np.ndarray:
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(rows), batch):
        out.append(model(*to_device(table.batch(rows[s:s + batch]), dev))[0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.p.D), np.float32)


@torch.no_grad()
def embed_bags(model, table, rows: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x^1 per product, and every descriptor row of X^1 (unit-normalised) with the product it belongs to:
    what P-I-bag indexes."""
    model.eval()
    dev = next(model.parameters()).device
    vecs, descs, owners = [], [], []
    for s in range(0, len(rows), batch):
        x1, X1, mask = model(*to_device(table.batch(rows[s:s + batch]), dev))
        vecs.append(x1.float().cpu().numpy())
        m = mask.cpu().numpy()
        descs.append(F.normalize(X1, dim=-1).float().cpu().numpy()[m])
        owners.append(np.nonzero(m)[0] + s)
    if not vecs:
        return np.zeros((0, model.p.D), np.float32), np.zeros((0, model.p.D), np.float32), np.zeros(0, np.int64)
    return np.concatenate(vecs), np.concatenate(descs), np.concatenate(owners)


def evaluate_embeddings(Xq: np.ndarray, Z: np.ndarray, Y: sp.csr_matrix, filt: np.ndarray, inv_p: np.ndarray,
                        k: int = 5) -> dict:
    extra = int(np.bincount(filt[:, 0]).max()) if len(filt) else 0
    S, I = exact_search(Xq, Z, k + extra)
    return evaluate(topk_to_csr(I, S, Z.shape[0]), Y, inv_p, filt)


@dataclass
class Module1State:
    epoch: int = 0
    history: list = field(default_factory=list)  # per epoch: loss, seconds, val metrics


def _own_label(ds: XCDataset, split: str) -> np.ndarray:
    lab = {u: i for i, u in enumerate(ds.uids["label"])}
    return np.array([lab.get(u, -1) for u in ds.uids[split]], np.int64)


def train(ds: XCDataset, emb: Embeddings, out_dir: str | Path, params: Module1Params = Module1Params(),
          model_params: ModelParams | None = None, resume: bool = True, stop_after: int | None = None,
          progress: bool = True) -> tuple[MufinEncoder, Module1State]:
    """Train (or resume) Module I; checkpoints every epoch to out_dir/checkpoints/last.pt (atomically)."""
    init_distributed()
    rank, world = dist_info()
    out_dir = Path(out_dir)
    dev = device()
    torch.manual_seed(params.seed)
    if params.freeze_encoders:
        table = BagTable(emb, params.keep_top_k, params.modalities)
        mp = model_params or ModelParams(text_dim=table.text.shape[1], image_dim=table.image_dim)
    else:
        mp = model_params or ModelParams()
    model = MufinEncoder(mp)
    groups = [{"params": list(model.parameters()), "lr": params.lr}]
    if not params.freeze_encoders:  # raw titles and images through trainable encoders
        model, table = build_finetune(ds, model, params.text_encoder, params.image_encoder, params.keep_top_k,
                                      params.modalities)
        groups = [{"params": list(model.mufin.parameters()), "lr": params.lr},
                  {"params": model.encoder_parameters(), "lr": params.encoder_lr}]
    model = model.to(dev)
    fit, val = carve_validation(ds.Y["train"].shape[0], params.val_fraction, params.seed)
    val_filt = validation_filter(ds, fit, val)
    Y = sp.csr_matrix(ds.Y["train"] > 0)
    p_rows = table.rows_of(ds.uids["train"])
    l_rows = table.rows_of(ds.uids["label"])
    own = _own_label(ds, "train")
    inv_p = inv_propensity(ds.Y["train"])
    steps = math.ceil(len(fit) / params.batch_size)
    opt = torch.optim.AdamW(groups, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(params.schedule, params.warmup_steps, params.epochs * steps))
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    state, clusters = Module1State(), None
    ckpt = out_dir / "checkpoints" / "last.pt"
    if resume and ckpt.exists():
        c = torch.load(ckpt, map_location=dev, weights_only=False)
        if c["params"] != asdict(params):
            raise ValueError(f"{ckpt}: saved with other parameters; use another output folder or resume=False")
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
        state.history.append(rec)
        state.epoch = epoch + 1
        if rank == 0:
            with atomic_path(ckpt) as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                            "epoch": state.epoch, "history": state.history, "clusters": clusters,
                            "params": asdict(params), "model_params": asdict(mp)}, tmp)
        if stop_after is not None and state.epoch >= stop_after:
            break
    if rank == 0 and state.epoch >= params.epochs:
        with atomic_path(out_dir / "model.pt") as tmp:
            torch.save({"model": model.state_dict(), "params": asdict(params), "model_params": asdict(mp)}, tmp)
        with atomic_write(out_dir / "history.json") as f:
            json.dump(state.history, f, indent=2)
    return model, state


def load_model(out_dir: str | Path, ds: XCDataset | None = None):
    """The trained Module I model (with its fine-tuned encoders when they were trained: pass ds)."""
    f = Path(out_dir) / "model.pt"
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing; run notebook 02_module1_siamese first (mufin run --only 01,02)")
    c = torch.load(f, map_location="cpu", weights_only=False)
    m = MufinEncoder(ModelParams(**c["model_params"]))
    p = Module1Params(**c["params"])
    if not p.freeze_encoders:
        if ds is None:
            raise ValueError(f"{f}: the encoders were fine-tuned; load_model needs the dataset (ds=...)")
        m, _ = build_finetune(ds, m, p.text_encoder, p.image_encoder, p.keep_top_k, p.modalities)
    m.load_state_dict(c["model"])
    return m.eval()


def load_params(out_dir: str | Path) -> Module1Params:
    f = Path(out_dir) / "model.pt"
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing; run notebook 02_module1_siamese first (mufin run --only 01,02)")
    return Module1Params(**torch.load(f, map_location="cpu", weights_only=False)["params"])


def bag_source(model, ds: XCDataset, emb: Embeddings | None, params: Module1Params):
    """What the trained model reads: cached pre-embeddings (frozen encoders) or raw titles and images
    through its fine-tuned encoders."""
    if params.freeze_encoders:
        return BagTable(emb, params.keep_top_k, params.modalities)
    from .encoders import load_image_encoder
    from .finetune import RawBags
    enc = None
    if params.modalities != "text" and model.image_model is not None:
        enc = load_image_encoder(params.image_encoder)
        enc.model = model.image_model  # the fine-tuned weights, the encoder's preprocessing
    return RawBags(ds, model.text_model, enc, params.keep_top_k, params.modalities)


def evaluate_model(model, ds: XCDataset, emb: Embeddings | None, split: str, params: Module1Params) -> dict:
    """P@k etc. of exact nearest labels by <x^1, z_l^1> on 'val' (carved from train) or 'test'."""
    table = bag_source(model, ds, emb, params)
    Z = embed_rows(model, table, table.rows_of(ds.uids["label"]))
    inv_p = inv_propensity(ds.Y["train"])
    if split == "val":
        fit, val = carve_validation(ds.Y["train"].shape[0], params.val_fraction, params.seed)
        rows = table.rows_of([ds.uids["train"][i] for i in val])
        return evaluate_embeddings(embed_rows(model, table, rows), Z, ds.Y["train"][val],
                                   validation_filter(ds, fit, val), inv_p)
    rows = table.rows_of(ds.uids[split])
    return evaluate_embeddings(embed_rows(model, table, rows), Z, ds.Y[split], ds.filters[split], inv_p)


def main(argv=None) -> int:
    """torchrun entry: torchrun --nproc_per_node N -m mufin_lib.module1 --run-dir runs/<id> [-p key=value ...]"""
    from .config import coerce
    from .data.prepare import load_prepared
    from .encoders import embed_dataset

    ap = argparse.ArgumentParser(prog="mufin_lib.module1")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", help="output folder (default: RUN_DIR/module1)")
    ap.add_argument("-p", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    kw = {}
    fields = Module1Params.__dataclass_fields__
    for item in args.p:
        k, v = item.split("=", 1)
        if k not in fields:
            raise SystemExit(f"-p {k}: not a Module I parameter (valid: {', '.join(fields)})")
        kw[k] = coerce(k, getattr(Module1Params(), k), v, "-p")
    ds, info = load_prepared(Path(args.run_dir))
    params = Module1Params(**kw)
    emb = (embed_dataset(Path(info["path"]), text_encoder=params.text_encoder, image_encoder=params.image_encoder)
           if params.freeze_encoders else None)  # fine-tuning reads raw titles and images
    _, state = train(ds, emb, Path(args.out or Path(args.run_dir) / "module1"), params)
    rank, world = dist_info()
    if rank == 0:
        print(json.dumps({"world_size": world, "epochs": state.epoch, "last": state.history[-1]}))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
