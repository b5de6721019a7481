"""Module IV (spec §7): the label-adapted ranker.

For a point and a shortlisted label l, cross-attention A_C takes the point's bag X^1 as queries and the
label's bag Z_l^1 as keys and values (residual + LayerNorm), and the masked mean gives the label-adapted
vector x^{2,l}. A one-vs-all classifier w_l (a learned mix of a free vector and the label's own embedding
z_l^1, both normalised) scores it: cos(x^{2,l}, w_l). Training: per point |S_i| = 2 positives and
|T_i| = 12 hard negatives from its shortlist; cosine embedding loss with margin 0.5.
Fusion with the embedding score is fusion.py's. `params` is stage 05's Module4Params
(mufin_lib.stages.module4), read by its fields.
"""
from __future__ import annotations

import json
import math
import time
import copy
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from .bags import embed_rows, to_device
from .fusion import score_shortlists, tune_alpha
from .layout import CHECKPOINTS, HISTORY, MODEL
from .model import FeedForward, MufinEncoder, SelfAttention, identity_attention, masked_mean
from .paths import atomic_path, atomic_write
from .progress import tqdm
from .training import autocast, dist_info, init_distributed, load_checkpoint, optimizer, optimizer_step, save_checkpoint


@dataclass
class LabelSide:
    """Module IV's label side computed ahead (Ranker.label_side), rows by label: the classifier vectors w, A_C's keys
    K and projected values V' with the bag mask, or ConCat's label half zc; and the labels' z^1 (Module IV's
    encoder copy: the embedding score where no Module I is given)."""
    w: torch.Tensor
    K: torch.Tensor | None
    V: torch.Tensor | None
    mask: torch.Tensor
    zc: torch.Tensor | None
    z1: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.w, self.K, self.V, self.mask, self.zc, self.z1) if t is not None)


class CrossAttention(nn.Module):
    """A_C: queries from the point's bag, keys and values from the label's bag; residual + LayerNorm."""

    def __init__(self, D: int, heads: int = 1, dropout: float = 0.1):
        super().__init__()
        # identity projections as A_S, but the residual branch starts at zero: at the start x^{2,l} is the
        # point's own mean (~ x^1), so the ranker scores as <x^1, z_l^1> and training moves it from there.
        # With an identity out-projection the label's bag is added to every point row from the start, which
        # cost the ranker most of its validation P@1 in its first epoch (REPRODUCE.md).
        self.attn = identity_attention(D, heads, dropout, out_scale=0.0)
        self.norm = nn.LayerNorm(D)

    def forward(self, Xq, q_mask, Zk, k_mask):
        out, _ = self.attn(Xq, Zk, Zk, key_padding_mask=~k_mask, need_weights=False)
        return masked_mean(self.norm(Xq + out), q_mask)

    def _heads(self, X, W, b):
        """X W^T + b split into heads: (B, m, D) -> (B, H, m, D/H)."""
        H = self.attn.num_heads
        Y = F.linear(X, W, b)
        return Y.view(*Y.shape[:2], H, -1).transpose(1, 2)

    def label_side(self, Zk):
        """Keys, and values already through the output projection, per head: what A_C needs of a label and that no
        query changes. Z: (L, w, D) -> K (L, H, w, D/H), V' (L, H, w, D), with out = sum_h softmax(q_h K_h) V'_h + b_o
        (softmax rows sum to one, so the output projection commutes with the weighted sum)."""
        a, D, H = self.attn, Zk.shape[-1], self.attn.num_heads
        _, Wk, Wv = a.in_proj_weight.split(D)
        _, bk, bv = a.in_proj_bias.split(D)
        K, V = self._heads(Zk, Wk, bk), self._heads(Zk, Wv, bv)
        Wo = a.out_proj.weight.view(D, H, D // H)  # the columns of W_o that read head h
        return K, torch.einsum("lhwd,ehd->lhwe", V, Wo)

    def attend(self, Xq, q_mask, K, V, k_mask, point=None):
        """forward() from the label side's K and V' (label_side), pair by pair: Xq (P, m, D), K (P, H, w, d),
        V' (P, H, w, D), k_mask (P, w). The same numbers as forward() in eval mode. With `point` (each pair's row of
        Xq and q_mask, which then hold each point once), the queries are projected once per point, not per pair."""
        a, D = self.attn, Xq.shape[-1]
        Q = self._heads(Xq, a.in_proj_weight[:D], a.in_proj_bias[:D])
        if point is not None:
            Q, Xq, q_mask = (t.index_select(0, point) for t in (Q, Xq, q_mask))
        att = (Q @ K.transpose(-1, -2)) / math.sqrt(Q.shape[-1])
        att = att.masked_fill(~k_mask[:, None, None, :], float("-inf")).softmax(-1)
        out = (att @ V).sum(1) + a.out_proj.bias
        return masked_mean(self.norm(Xq + out), q_mask)


class Ranker(nn.Module):
    def __init__(self, encoder: MufinEncoder, n_labels: int, combiner: str = "cross_attention", mix: str = "global"):
        super().__init__()
        D = encoder.p.D
        self.encoder = encoder
        self.combiner = combiner
        if combiner == "cross_attention":
            self.A_C = CrossAttention(D)
        elif combiner == "concat":  # 2D -> 2D -> D
            self.A_C = nn.Sequential(nn.Linear(2 * D, 2 * D), nn.ReLU(), nn.Linear(2 * D, D))
        elif combiner != "none":
            raise ValueError(f"combiner '{combiner}': expected cross_attention, concat or none")
        # free vectors start as the labels' own z_l^1 (init_classifiers), so that a rarely trained label is
        # scored by its embedding rather than by a random direction
        self.free = nn.Parameter(torch.randn(n_labels, D) * 0.01)
        # sigmoid(0) = 0.5: half free vector, half z_l^1; one weight, or one per label (as the authors' code)
        self.mix = nn.Parameter(torch.zeros(n_labels if mix == "per_label" else 1))

    @torch.no_grad()
    def init_classifiers(self, z1: np.ndarray) -> None:
        self.free.copy_(torch.from_numpy(np.asarray(z1, np.float32)).to(self.free.device))

    def represent(self, X1, m1, x1, Z1, mz, z1):
        """x^{2,l}: the point's representation for label l (A_C, its ConCat variant, or x^1 with no A_C)."""
        if self.combiner == "cross_attention":
            return self.A_C(X1, m1, Z1, mz)
        if self.combiner == "concat":
            return self.A_C(torch.cat([x1, z1], -1))
        return x1

    def classifier(self, labels, z1):
        """w_l: the learned mix of the label's free vector and its z_l^1, unit length."""
        g = torch.sigmoid(self.mix[labels].unsqueeze(-1) if self.mix.numel() > 1 else self.mix)
        return F.normalize(g * F.normalize(self.free[labels], dim=-1) + (1 - g) * z1, dim=-1)

    def pair_scores(self, X1, m1, x1, Z1, mz, z1, labels):
        """Scores of pairs: point rows X1/m1/x1 and label rows Z1/mz/z1 already aligned pair by pair."""
        x2 = self.represent(X1, m1, x1, Z1, mz, z1)
        w = self.classifier(labels, z1)
        return (F.normalize(x2, dim=-1) * w).sum(-1)

    @torch.no_grad()
    def label_side(self, z1, Z1, mz, labels, dtype=torch.float32) -> "LabelSide":
        """Everything of Module IV's score that depends on the label alone, for labels `labels` (their encoder outputs
        z1, Z1, mz): A_C's keys and projected values (or ConCat's first layer on z^1), and the classifier w_l. Stored
        as `dtype` (float16 halves the memory; scores are computed in float32)."""
        w = self.classifier(labels, z1)
        K = V = zc = None
        if self.combiner == "cross_attention":
            K, V = self.A_C.label_side(Z1)
        elif self.combiner == "concat":  # Linear(cat(x1, z1)) = W_a x1 + (W_b z1 + b): the label's half ahead
            first = self.A_C[0]
            zc = F.linear(z1, first.weight[:, z1.shape[-1]:], first.bias)
        cast = (lambda t: None if t is None else t.to(dtype))
        return LabelSide(cast(w), cast(K), cast(V), mz, cast(zc), cast(z1))

    def scores_ahead(self, X1, m1, x1, side: "LabelSide", rows, point=None):
        """pair_scores from a LabelSide computed ahead: `rows` the pairs' rows of `side`; X1/m1/x1 the points' rows,
        each point once with `point` (each pair's point: what depends on the point alone is computed once per
        point), else aligned pair by pair. The same numbers as pair_scores (float32 side) in eval mode."""
        f = (lambda t: t.index_select(0, rows).float())  # index_select: a few times faster than t[rows] on a CPU
        per_pair = (lambda t: t if point is None else t.index_select(0, point))
        if self.combiner == "cross_attention":
            x2 = self._attend_by_width(X1, m1, side, rows, point)
        elif self.combiner == "concat":
            first = self.A_C[0]
            h = per_pair(F.linear(x1, first.weight[:, :x1.shape[-1]])) + f(side.zc)
            x2 = self.A_C[2](self.A_C[1](h))
        else:
            x2 = per_pair(x1)
        return (F.normalize(x2, dim=-1) * f(side.w)).sum(-1)

    def _attend_by_width(self, X1, m1, side: "LabelSide", rows, point):
        """A_C from the label side ahead, its pairs grouped by their point's bag width (its last descriptor + 1), so
        that a batch is not padded to its widest bag (one product with 15 photos made every pair of the batch attend
        from 16 rows). Exact: the padded rows are masked out of A_C's mean."""
        f = (lambda t, r: t.index_select(0, r).float())
        if point is None or X1.shape[1] == 1:
            return self.A_C.attend(X1, m1, f(side.K, rows), f(side.V, rows), side.mask.index_select(0, rows), point)
        width = (m1 * torch.arange(1, m1.shape[1] + 1, device=m1.device)).amax(1)
        pair_width = width.index_select(0, point)
        out = torch.empty(len(point), X1.shape[-1], dtype=X1.dtype, device=X1.device)
        at = torch.full((len(width),), -1, dtype=torch.long, device=X1.device)  # a point's row within its group
        for w in torch.unique(width).tolist():
            pts = torch.nonzero(width == w).squeeze(1)
            at[pts] = torch.arange(len(pts), device=X1.device)
            sel = torch.nonzero(pair_width == w).squeeze(1)
            if len(sel):
                r = rows.index_select(0, sel)
                out[sel] = self.A_C.attend(X1[pts, :w], m1[pts, :w], f(side.K, r), f(side.V, r),
                                           side.mask.index_select(0, r), at.index_select(0, point.index_select(0, sel)))
        return out

    def unseen_pair_scores(self, X1, m1, x1, Z1, mz, z1):
        """Scores against labels the ranker never had (an outfit item of the disjoint split): the classifier's
        per-label part (free vector) at zero, so w = z_l^1 from the label's content alone, whatever the mix."""
        return (F.normalize(self.represent(X1, m1, x1, Z1, mz, z1), dim=-1) * F.normalize(z1, dim=-1)).sum(-1)

    def forward(self, point_inputs, label_inputs, pair_point, pair_label, label_ids):
        """pair_point/pair_label index the rows of the two input batches; label_ids are the labels' ids."""
        x1, X1, m1 = self.encoder(*point_inputs)
        z1, Z1, mz = self.encoder(*label_inputs)
        return self.pair_scores(X1[pair_point], m1[pair_point], x1[pair_point], Z1[pair_label], mz[pair_label],
                                z1[pair_label], label_ids[pair_label])


def cosine_embedding_loss(scores, target, margin: float = 0.5):
    """1 - s for positives, max(0, s - margin) for negatives (torch's CosineEmbeddingLoss)."""
    return torch.where(target > 0, 1 - scores, F.relu(scores - margin)).mean()


def softmax_loss(scores, target, point, n_points: int, temperature: float = 0.1):
    """Listwise option (not the paper's): each positive against all of its point's negatives,
    -log(e^{s_p/t} / (e^{s_p/t} + sum_n e^{s_n/t})). It trains the order within a shortlist, which is what the
    fusion uses, where the cosine embedding loss trains each label's absolute score."""
    s = scores / temperature
    neg = target < 0
    lse = torch.full((n_points,), -torch.inf, device=s.device, dtype=s.dtype)
    if neg.any():
        mx = lse.scatter_reduce(0, point[neg], s[neg], reduce="amax", include_self=True)
        tot = torch.zeros_like(lse).index_add(0, point[neg], torch.exp(s[neg] - mx[point[neg]]))
        lse = torch.where(torch.isfinite(mx), mx + torch.log(tot.clamp_min(1e-30)), lse)
    pos = ~neg
    sp_ = s[pos]
    return (torch.logaddexp(sp_, lse[point[pos]]) - sp_).mean()


def ranker_loss(scores, target, point, n_points: int, params):
    if params.loss == "cosine_embedding":
        return cosine_embedding_loss(scores, target, params.margin)
    if params.loss == "softmax":
        return softmax_loss(scores, target, point, n_points, params.temperature)
    raise ValueError(f"Module IV loss '{params.loss}': expected cosine_embedding or softmax")


def sample_pairs(Y: sp.csr_matrix, rows: np.ndarray, shortlist: np.ndarray, own: np.ndarray, n_pos: int,
                 n_neg: int, rng: np.random.Generator, sampling: str = "top", Z: np.ndarray | None = None,
                 max_csim: float = 1.0):
    """(point index in batch, label id, target) triples: positives from the truth, negatives from the shortlist
    (never a positive or the point's own product): the highest-ranked ones ("top") or sampled with probability
    1 / (rank + 1) ("rank"); with unit label vectors Z and max_csim < 1, none whose cosine with a positive's
    vector exceeds max_csim."""
    pts, labs, tgt = [], [], []
    for b, i in enumerate(rows):
        pos = Y.indices[Y.indptr[i]:Y.indptr[i + 1]]
        if len(pos) == 0:
            continue
        chosen = rng.choice(pos, size=min(n_pos, len(pos)), replace=False)
        posset = set(pos.tolist())
        cand = np.array([int(l) for l in shortlist[i] if l >= 0 and l not in posset and l != own[i]], np.int64)
        if Z is not None and max_csim < 1 and len(cand):
            cand = cand[(Z[cand] @ Z[pos].T).max(1) <= max_csim]
        if sampling == "rank" and len(cand) > n_neg:
            w = 1.0 / (np.arange(len(cand)) + 1.0)
            cand = cand[np.sort(rng.choice(len(cand), size=n_neg, replace=False, p=w / w.sum()))]
        negs = cand[:n_neg].tolist()
        for l in chosen:
            pts.append(b); labs.append(int(l)); tgt.append(1.0)
        for l in negs:
            pts.append(b); labs.append(l); tgt.append(-1.0)
    return np.array(pts, np.int64), np.array(labs, np.int64), np.array(tgt, np.float32)


def _param_groups(ranker: Ranker, params) -> tuple[list[dict], list]:
    """(optimizer groups, the encoder's parameters): new layers at lr, the one-vs-all classifiers at classifier_lr
    (the authors train them at 100x the encoder's lr), Module I's layers at encoder_lr when they train."""
    enc_params = list(ranker.encoder.parameters())
    for p in enc_params:
        p.requires_grad_(params.train_encoder)
    clf = {"free", "mix"}
    groups = [{"params": [p for n, p in ranker.named_parameters() if not n.startswith("encoder.") and n not in clf],
               "lr": params.lr},
              {"params": [ranker.free, ranker.mix], "lr": params.classifier_lr or params.lr}]
    if params.train_encoder:
        groups.append({"params": enc_params, "lr": params.encoder_lr})
    return groups, enc_params


def _unit_label_vectors(ranker: Ranker, table, label_rows: np.ndarray, params) -> tuple[np.ndarray, np.ndarray | None]:
    """(Module I's label vectors z_l^1 before any training, their unit rows for the negatives' near-duplicate
    check (max_csim; None when every negative is kept))."""
    z0 = embed_rows(ranker.encoder, table, label_rows)
    Z = np.asarray(z0, np.float32) / (np.linalg.norm(z0, axis=1, keepdims=True) + 1e-12) if params.max_csim < 1 else None
    return z0, Z


def _epoch(model, ranker: Ranker, opt, sched, table, Y, point_rows, label_rows, shortlist, own, Z, train_pts,
           epoch: int, n_epochs: int, frozen: bool, params, progress: bool) -> dict:
    """One epoch of Module IV over the train points; its record (loss, seconds)."""
    rank, world = dist_info()
    t0 = time.time()
    rng = np.random.default_rng([params.seed, 1000 + epoch])
    torch.manual_seed(params.seed * 100_003 + 1000 + epoch)
    order = rng.permutation(train_pts)
    ranker.train()
    if frozen:  # features as computed once (the authors' precomputed ones): no dropout, no spectral-norm step
        ranker.encoder.eval()
    dev = next(ranker.parameters()).device
    losses = []
    bar = tqdm(range(0, len(order), params.batch_size),
               desc=f"module IV epoch {epoch + 1}/{n_epochs}" + (" (frozen features)" if frozen else ""),
               disable=not progress or rank != 0, mininterval=2, leave=False)
    for s in bar:
        rows = order[s:s + params.batch_size][rank::world]
        pp, ll, tt = sample_pairs(Y, rows, shortlist, own, params.positives, params.negatives, rng,
                                  params.negative_sampling, Z, params.max_csim)
        if len(pp) == 0:
            continue
        labels, pl = np.unique(ll, return_inverse=True)
        with autocast(dev, params.mixed_precision):
            scores = model(to_device(table.batch(point_rows[rows]), dev), to_device(table.batch(label_rows[labels]), dev),
                           torch.from_numpy(pp).to(dev), torch.from_numpy(pl).to(dev), torch.from_numpy(labels).to(dev))
            loss = ranker_loss(scores.float(), torch.from_numpy(tt).to(dev), torch.from_numpy(pp).to(dev), len(rows), params)
        losses.append(optimizer_step(loss, opt, sched, ranker.parameters(), params.grad_clip))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    return {"epoch": epoch + 1, "frozen_features": frozen, "loss": float(np.mean(losses)) if losses else float("nan"),
            "seconds": round(time.time() - t0, 2)}


def _save_final(ranker: Ranker, history: list[dict], out_dir: Path, best: Path, select: bool, params) -> None:
    """Load the selected epoch (with select) and write model.pt and history.json (rank 0)."""
    rank, world = dist_info()
    chosen = len(history)
    if select:
        chosen = _best_epoch(history)
        if world > 1:
            torch.distributed.barrier()  # rank 0 wrote best.pt
        ranker.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["model"])
        for r in history:
            r["selected"] = r["epoch"] == chosen
    if rank == 0:
        with atomic_path(out_dir / MODEL) as tmp:
            torch.save({"model": ranker.state_dict(), "params": asdict(params), "epoch": chosen}, tmp)
        with atomic_write(out_dir / HISTORY) as f:
            json.dump(history, f, indent=2)


def train_ranker(ranker: Ranker, table, Y: sp.csr_matrix, point_rows: np.ndarray, label_rows: np.ndarray,
                 shortlist: np.ndarray, own: np.ndarray, out_dir: str | Path, params, resume: bool = True,
                 stop_after: int | None = None, progress: bool = True, validate=None):
    """Train Module IV on the train points (rows of Y/shortlist), checkpointing every epoch atomically.
    `validate(ranker) -> dict` (e.g. `Validation`), called after each epoch on rank 0, adds validation
    metrics to the history; with params.select_epoch the saved ranker is the epoch with the best "val_fused_P@1"
    (ties: then fused nDCG@5, the ranker's own nDCG@5, the earlier epoch) and params.patience stops early.
    The first params.frozen_epochs train on Module I's frozen features (the authors' two stages)."""
    init_distributed()
    rank, world = dist_info()
    if world > 1 and params.frozen_epochs:  # DDP fixes the set of trained parameters when it wraps the model
        raise ValueError("frozen_epochs > 0 runs in one process only: run the frozen stage without torchrun")
    out_dir = Path(out_dir)
    torch.manual_seed(params.seed)
    Y = sp.csr_matrix(Y > 0)
    train_pts = np.flatnonzero(Y.getnnz(1) > 0)
    groups, enc_params = _param_groups(ranker, params)
    n_epochs = params.frozen_epochs + params.epochs
    opt, sched = optimizer(groups, params, n_epochs * math.ceil(len(train_pts) / params.batch_size))
    model = torch.nn.parallel.DistributedDataParallel(ranker, find_unused_parameters=True) if world > 1 else ranker
    history, start = [], 0
    ckpt, best = out_dir / CHECKPOINTS / "last.pt", out_dir / CHECKPOINTS / "best.pt"
    select = params.select_epoch and validate is not None
    z0, Z = _unit_label_vectors(ranker, table, label_rows, params)
    c = load_checkpoint(ckpt, params) if resume else None
    if c is not None:
        ranker.load_state_dict(c["model"]); opt.load_state_dict(c["opt"]); sched.load_state_dict(c["sched"])
        history, start = c["history"], c["epoch"]
    if start == 0:
        ranker.init_classifiers(z0)
    finished = start > 0 and _stop_early(history, params, select, world)  # a resumed run that had stopped early
    for epoch in range(start, start if finished else n_epochs):
        frozen = epoch < params.frozen_epochs
        for p in enc_params:  # AdamW leaves a parameter without a gradient as it is
            p.requires_grad_(params.train_encoder and not frozen)
        rec = _epoch(model, ranker, opt, sched, table, Y, point_rows, label_rows, shortlist, own, Z, train_pts,
                     epoch, n_epochs, frozen, params, progress)
        if validate is not None and rank == 0:
            t1 = time.time()
            rec.update(validate(ranker))
            rec["val_seconds"] = round(time.time() - t1, 2)
        history.append(rec)
        if rank == 0:
            if select and _best_epoch(history) == epoch + 1:  # before last.pt: a resume never loses the best
                with atomic_path(best) as tmp:
                    torch.save({"model": ranker.state_dict(), "epoch": epoch + 1}, tmp)
            save_checkpoint(ckpt, model=ranker.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                            epoch=epoch + 1, history=history, params=asdict(params))
        if stop_after is not None and epoch + 1 >= stop_after:
            return ranker, history
        if not frozen and _stop_early(history, params, select, world):  # the fine-tuning stage always starts
            break
    _save_final(ranker, history, out_dir, best, select, params)
    return ranker, history


SELECT_KEYS = ("val_fused_P@1", "val_fused_nDCG@5", "val_nDCG@5")  # later keys break ties (small validation sets)


def _best_epoch(history: list[dict]) -> int:
    return max(history, key=lambda r: (*(r.get(k, -1.0) for k in SELECT_KEYS), -r["epoch"]))["epoch"]


def _stop_early(history: list[dict], params, select: bool, world: int) -> bool:
    """True after params.patience epochs without a better validation score (decided on rank 0, shared)."""
    stop = select and params.patience > 0 and history[-1]["epoch"] - _best_epoch(history) >= params.patience
    if world > 1:
        t = torch.tensor([float(stop)])
        torch.distributed.broadcast(t, 0)  # only rank 0 validated
        stop = bool(t.item())
    return stop


class Validation:
    """Per-epoch check of Module IV on validation points: the ranker's P@1 alone and the fused P@1 at the best
    alpha of the grid. The embedding scores <x^1, z_l^1> come from the frozen Module I model, computed once."""

    def __init__(self, module1, table, point_rows, label_rows, shortlist, Y, filt, inv_p):
        self.module1, self.table, self.point_rows, self.label_rows = module1, table, point_rows, label_rows
        self.shortlist, self.Y, self.filt, self.inv_p = shortlist, Y, filt, inv_p
        self.emb = None

    def __call__(self, ranker: Ranker) -> dict:
        was_training = ranker.training
        emb, rnk = score_shortlists(ranker, self.table, self.point_rows, self.label_rows, self.shortlist,
                                    None if self.emb is not None else self.module1)
        ranker.train(was_training)
        if self.emb is None:
            self.emb = emb
        alpha, curve = tune_alpha(self.emb, rnk, self.shortlist, self.Y, self.filt, self.inv_p)
        best = next(r for r in curve if r["alpha"] == alpha)
        return {"val_P@1": round(curve[0]["P@1"], 4), "val_nDCG@5": round(curve[0]["nDCG@5"], 4),
                "val_embedding_P@1": round(curve[-1]["P@1"], 4),  # alpha = 1: the reference the ranker must beat
                "val_fused_P@1": round(best["P@1"], 4), "val_fused_nDCG@5": round(best["nDCG@5"], 4), "val_alpha": alpha}


def build_ranker(encoder, n_labels: int, params) -> Ranker:
    """Module IV on top of the Module I model (A_S kept, as the paper, or re-initialised, as the code)."""
    enc = copy.deepcopy(encoder)
    torch.manual_seed(params.seed)  # the new layers start the same in every run (resume depends on it)
    if params.reinit_self_attention:
        core = enc.mufin if hasattr(enc, "mufin") else enc
        core.A_S = (SelfAttention(core.p.D, core.p.heads, core.p.attn_dropout) if core.p.self_attention
                    else FeedForward(core.p.D))  # the "no A_S" ablation keeps its feed-forward layer
    return Ranker(enc, n_labels, params.combiner, params.mix)


def load_ranker(out_dir: str | Path, encoder, n_labels: int) -> Ranker:
    f = Path(out_dir) / MODEL
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing (stage 05, module4, trains Module IV)")
    c = torch.load(f, map_location="cpu", weights_only=False)
    r = build_ranker(encoder, n_labels, SimpleNamespace(**c["params"]))
    r.load_state_dict(c["model"])
    return r.eval()
