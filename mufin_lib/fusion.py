"""Fusion (spec §8): score = alpha * <x^1, z_l^1> + (1 - alpha) * ranker(x, l) over each shortlist.

Kit options (not the paper; stage 06 names them): alpha per label-frequency bin, and two added terms from the
training points, beta * votes(x, l) (Module III's training-point votes: the summed similarities of the point's
nearest training points that bought l, over the number of voters) and gamma * log(1 + n_l) / log(1 + max n)
(label popularity in the fit points): the per-label evidence and bias that a unit-norm cosine score lacks.

Here: scoring shortlists, fusing, tuning alpha (and the terms) on validation scores, and `FusionParams`, what a
trained model fuses with (saved beside it as fusion.json). Nothing here knows runs or stages.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .bags import to_device
from .layout import ALPHA, FUSION
from .metrics import evaluate
from .paths import atomic_write


@torch.no_grad()
def score_pairs(ranker, point_inputs, label_table, label_rows: np.ndarray, shortlist: np.ndarray,
                module1=None, label_z1: np.ndarray | None = None, with_ranker: bool = True, label_side=None,
                point_x1: np.ndarray | None = None):
    """(embedding score <x^1, z_l^1>, ranker score) for each (point, shortlisted label) of one batch of
    points given as model inputs; -inf where the shortlist has no label. The embedding score comes from
    `module1` (the Module I model that retrieved the shortlist); Module IV trains its own copy of those
    layers for the ranker score. label_z1: Module I's z^1 of every label computed ahead (a model folder's; rows by
    label id), so that no label is encoded per query; label_side: Module IV's label side of every label computed
    ahead (`label_side`: A_C's keys and values, the classifiers), rows by label id; with_ranker=False (a fusion whose alpha is 1 everywhere gives the ranker no
    weight): the ranker score is 0, and Module IV does not run; point_x1: the points' x^1 from `module1`, where the
    caller has them (prediction retrieved with them), so that Module I does not run again."""
    dev = next(ranker.parameters()).device
    emb = np.full(shortlist.shape, -np.inf, np.float32)
    rnk = np.full(shortlist.shape, -np.inf, np.float32)
    valid = shortlist >= 0
    if not valid.any():
        return emb, rnk
    labels, inv = np.unique(shortlist[valid], return_inverse=True)
    pp = np.nonzero(valid)[0]
    ppt, plt = torch.from_numpy(pp).to(dev), torch.from_numpy(inv).to(dev)
    if with_ranker:
        x1, X1, m1 = ranker.encoder(*to_device(point_inputs, dev))
        if label_side is not None:  # Module IV's label side computed ahead: only the query's side runs here
            lt = torch.from_numpy(labels).to(dev)
            r = ranker.scores_ahead(X1, m1, x1, label_side, lt.index_select(0, plt), point=ppt)
            if module1 is None:  # the embedding score's labels where no Module I is given
                z1 = label_side.z1.index_select(0, lt).float()
        else:
            z1, Z1, mz = ranker.encoder(*to_device(label_table.batch(label_rows[labels]), dev))
            r = ranker.pair_scores(X1[ppt], m1[ppt], x1[ppt], Z1[plt], mz[plt], z1[plt], torch.from_numpy(labels).to(dev)[plt])
        rnk[valid] = r.float().cpu().numpy()
    else:
        rnk[valid] = 0.0
    if point_x1 is not None:
        x1 = torch.from_numpy(np.asarray(point_x1, np.float32)).to(dev)
    elif module1 is not None:
        module1.eval()
        x1, _, _ = module1(*to_device(point_inputs, dev))
    if module1 is not None:
        z1 = (torch.from_numpy(np.asarray(label_z1[labels], np.float32)).to(dev) if label_z1 is not None
              else module1(*to_device(label_table.batch(label_rows[labels]), dev))[0])
    emb[valid] = (x1[ppt] * z1[plt]).sum(-1).float().cpu().numpy()
    return emb, rnk


@torch.no_grad()
def label_states(ranker, label_table, label_rows: np.ndarray, batch: int = 4096):
    """Module IV's encoder outputs (z^1, X^1 padded to the widest bag, mask) of every label, computed once: the label
    side of score_pairs that does not depend on the query (label_side goes on from here)."""
    ranker.eval()
    dev = next(ranker.parameters()).device
    width = int(label_table.counts[label_rows].max()) + 1 if len(label_rows) else 1
    z, Z, M = [], [], []
    for s in range(0, len(label_rows), batch):
        z1, Z1, mz = ranker.encoder(*to_device(label_table.batch(label_rows[s:s + batch]), dev))
        pad = width - Z1.shape[1]
        z.append(z1)
        Z.append(torch.nn.functional.pad(Z1, (0, 0, 0, pad)))
        M.append(torch.nn.functional.pad(mz, (0, pad), value=False))
    return torch.cat(z), torch.cat(Z), torch.cat(M)


# Module IV's label side (A_C's keys and values, the classifiers, z^1) is kept ahead in float32 up to 4 GiB, in
# float16 up to that again (1M labels with bags of two: 2.3 GB); beyond, the labels' bags are encoded per query
LABEL_SIDE_BYTES = 4 << 30


@torch.no_grad()
def label_side(ranker, label_table, label_rows: np.ndarray, batch: int = 4096, dtype=torch.float32):
    """Module IV's label side of every label (Ranker.label_side over label_states), computed once; rows follow
    label ids (label_rows[i] is label i's row). float16 `dtype` halves its memory (scores are computed in float32)."""
    z, Z, M = label_states(ranker, label_table, label_rows, batch)
    parts = [ranker.label_side(z[s:s + batch], Z[s:s + batch], M[s:s + batch],
                               torch.arange(s, min(s + batch, len(z)), device=z.device), dtype) for s in range(0, len(z), batch)]
    cat = (lambda name: None if getattr(parts[0], name) is None else torch.cat([getattr(p, name) for p in parts]))
    return type(parts[0])(cat("w"), cat("K"), cat("V"), M, cat("zc"), cat("z1"))


def label_side_dtype(ranker, counts: np.ndarray, budget: int = LABEL_SIDE_BYTES):
    """float32 where Module IV's label side of the labels whose bags hold `counts` descriptors beside the title fits
    in `budget`, float16 where it fits there, else None (encode the labels per query). Its size: per label, w and z^1
    (D each) and, with A_C, keys (width x D) and values projected per head (width x heads x D)."""
    L = len(counts)
    width = int(np.max(counts)) + 1 if L else 1
    attn = getattr(getattr(ranker, "A_C", None), "attn", None)
    need = L * ranker.free.shape[1] * (2 + (width * (1 + attn.num_heads) if attn is not None else 0))
    return next((d for d, b in ((torch.float32, 4), (torch.float16, 2)) if need * b <= budget), None)


@torch.no_grad()
def score_shortlists(ranker, table, point_rows: np.ndarray, label_rows: np.ndarray, shortlist: np.ndarray,
                     module1=None, batch_points: int = 64, side_dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """score_pairs over all points of a split, in batches; Module IV's label side computed once for all of them
    (as `side_dtype`; by default float32 or float16 where it fits in LABEL_SIDE_BYTES)."""
    ranker.eval()
    dtype = side_dtype or label_side_dtype(ranker, table.counts[label_rows])
    side = label_side(ranker, table, label_rows, dtype=dtype) if dtype is not None and len(shortlist) else None
    parts = [score_pairs(ranker, table.batch(point_rows[s:s + batch_points]), table, label_rows,
                         shortlist[s:s + batch_points], module1, label_side=side)
             for s in range(0, len(shortlist), batch_points)]
    if not parts:
        return np.zeros(shortlist.shape, np.float32), np.zeros(shortlist.shape, np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def fuse(emb: np.ndarray, rnk: np.ndarray, shortlist: np.ndarray, alpha, n_labels: int, extra=0.0) -> sp.csr_matrix:
    """Sparse scores alpha * emb + (1 - alpha) * ranker + extra over each shortlist (shifted positive). `alpha`: one
    number, or one per label (popularity-aware fusion); `extra`: the added terms (`added`), shaped as the shortlist."""
    if not np.isscalar(alpha):
        alpha = np.asarray(alpha, np.float32)[np.maximum(shortlist, 0)]
    s = alpha * emb + (1 - alpha) * rnk + extra
    valid = (shortlist >= 0) & np.isfinite(s)
    rows = np.nonzero(valid)[0]
    return sp.csr_matrix((s[valid] + 10.0, (rows, shortlist[valid])), shape=(len(shortlist), n_labels))


def tune_alpha(emb, rnk, shortlist, Y, filt, inv_p, grid=np.linspace(0, 1, 11), metric: str = "P@1") -> tuple[float, list]:
    """The alpha of the grid with the best validation metric (ties: the larger alpha)."""
    curve = []
    for a in grid:
        m = evaluate(fuse(emb, rnk, shortlist, float(a), Y.shape[1]), Y, inv_p, filt)
        curve.append({"alpha": round(float(a), 3), **m})
    best = max(curve, key=lambda r: (r[metric], r["alpha"]))
    return best["alpha"], curve


VOTE_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
PRIOR_GRID = (0.0, 0.1, 0.2, 0.4, 0.8, 1.6)


def log_popularity(Y_fit: sp.csr_matrix) -> np.ndarray:
    """Per label, log(1 + training points) / log(1 + the most): 0 for unseen labels, 1 for the most popular."""
    freq = np.asarray((sp.csr_matrix(Y_fit) > 0).sum(0)).ravel()
    return (np.log1p(freq) / max(np.log1p(freq.max()), 1e-12)).astype(np.float32)


def pair_terms(voters, popularity: np.ndarray, x1: np.ndarray, shortlist: np.ndarray, found=None) -> tuple[np.ndarray, np.ndarray]:
    """(votes, log-popularity) of each shortlisted (point, label), for points embedded by Module I (x1); `voters` is
    Module III's TrainVotes over the fit points, `popularity` their `log_popularity`; `found`: the points' vote
    neighbours searched before (stage 04's), else they are searched."""
    votes = voters.pair_votes(x1, shortlist, found=found)
    return votes, np.where(shortlist >= 0, popularity[np.maximum(shortlist, 0)], 0.0)


def added(terms: dict | None, votes, prior):
    """beta * votes + gamma * log-popularity as `terms` (the record stage 06 saves) weighs them; 0 without terms."""
    if not terms:
        return 0.0
    return terms["vote_weight"] * votes + terms["prior_weight"] * prior


def tune_terms(emb, rnk, shortlist, votes, prior, Y, filt, inv_p, metric: str = "P@1", use_votes: bool = True,
               use_prior: bool = True, grid=np.linspace(0, 1, 11)) -> dict:
    """alpha, beta (votes) and gamma (log-popularity) together: the point of alpha grid x VOTE_GRID x PRIOR_GRID with
    the best validation metric (ties: the larger alpha, then the smaller weights)."""
    best, key = None, None
    inv_p = inv_p if metric.startswith("PS") else None  # P@k and nDCG@k need no propensities (and are faster without)
    for b in (VOTE_GRID if use_votes else (0.0,)):
        for g in (PRIOR_GRID if use_prior else (0.0,)):
            extra = b * votes + g * prior
            for a in grid:
                m = evaluate(fuse(emb, rnk, shortlist, float(a), Y.shape[1], extra), Y, inv_p, filt)[metric]
                k = (m, round(float(a), 3), -b, -g)
                if key is None or k > key:
                    key, best = k, {"alpha": round(float(a), 3), "vote_weight": b, "prior_weight": g, metric: m}
    return best


def label_bins(Y_train: sp.csr_matrix, edges: str) -> tuple[np.ndarray, list[str]]:
    """Each label's frequency bin (0..len(edges)) from its number of training points, and the bins' names."""
    cuts = [int(x) for x in edges.split(",") if x.strip()]
    if cuts != sorted(set(cuts)) or any(c < 1 for c in cuts):
        raise ValueError(f"frequency_bins '{edges}': expected increasing positive integers, e.g. 2,5,20")
    freq = np.asarray((sp.csr_matrix(Y_train) > 0).sum(0)).ravel()
    lo = [0] + cuts
    names = [f"{a}-{b - 1}" if b - 1 > a else f"{a}" for a, b in zip(lo, cuts)] + [f"{lo[-1]}+"]
    return np.searchsorted(cuts, freq, side="right"), names


def tune_alpha_bins(emb, rnk, shortlist, Y, filt, inv_p, bins: np.ndarray, n_bins: int, alpha0: float,
                    grid=np.linspace(0, 1, 11), metric: str = "P@1", rounds: int = 2, extra=0.0) -> tuple[np.ndarray, list]:
    """One alpha per label-frequency bin: from the global alpha, each bin's alpha in turn set to the grid value with
    the best validation metric (ties: keep the current one), `rounds` times over the bins."""
    per_bin = np.full(n_bins, float(alpha0))
    best = evaluate(fuse(emb, rnk, shortlist, per_bin[bins], Y.shape[1], extra), Y, inv_p, filt)[metric]
    log = []
    for r in range(rounds):
        for b in range(n_bins):
            for a in grid:
                trial = per_bin.copy(); trial[b] = round(float(a), 3)
                m = evaluate(fuse(emb, rnk, shortlist, trial[bins], Y.shape[1], extra), Y, inv_p, filt)[metric]
                log.append({"round": r + 1, "bin": b, "alpha": round(float(a), 3), metric: m})
                if m > best + 1e-9:
                    best, per_bin = m, trial
    return per_bin, log


def evaluate_fused(emb, rnk, shortlist, alpha: float, split, inv_p) -> dict:
    """Metrics of the fused scores at `alpha` on a split (truth and filter from `split`)."""
    return evaluate(fuse(emb, rnk, shortlist, alpha, split.Y.shape[1]), split.Y, inv_p, split.filter)


def save_alpha(folder: str | Path, alpha: float, metric: str, curve: list[dict], by_frequency: dict | None = None,
               terms: dict | None = None) -> Path:
    """alpha (the paper's score alone) with the validation metric that chose it and the whole curve, saved beside the
    run's results; with popularity-aware fusion also {"edges", "bins" (names), "alphas"} per label-frequency bin; with
    the added terms {"alpha", "vote_weight", "prior_weight", "vote_neighbours"} (the per-bin alphas then start from
    that alpha and are tuned with the terms in)."""
    f = Path(folder) / ALPHA
    with atomic_write(f) as out:
        json.dump({"alpha": alpha, "metric": metric, "curve": curve, "by_frequency": by_frequency, "terms": terms},
                  out, indent=2)
    return f


def load_alpha(folder: str | Path) -> dict:
    f = Path(folder) / ALPHA
    if not f.exists():
        raise FileNotFoundError(f"{f}: missing (stage 06, evaluate, tunes alpha)")
    rec = json.loads(f.read_text())
    if not isinstance(rec.get("alpha"), (int, float)) or not 0.0 <= rec["alpha"] <= 1.0:
        raise ValueError(f"{f}: 'alpha' must be a number in [0, 1], got {rec.get('alpha')!r}")
    return rec


def _terms_words(terms: dict, weights: dict) -> str:
    """" + 2 votes + 0.4 log-popularity": the added terms a record turns on, at `weights`."""
    return "".join([f" + {weights['vote_weight']:g} votes" if terms.get("votes") else "",
                    f" + {weights['prior_weight']:g} log-popularity" if terms.get("prior") else ""])


def paper_fusion_name(alpha: float, modules: str) -> str:
    """The row of the paper's score (alpha alone) on a run's Modules I-IV (`pipeline.modules_name`)."""
    return f"MUFIN (paper fusion alpha={alpha:g}; {modules})"


def mufin_variants(rec: dict, per_label, emb, rnk, shortlist, n_labels: int, votes=None, prior=None,
                   modules: str = "") -> list[tuple[str, sp.csr_matrix]]:
    """(name, test scores) of MUFIN's fused rows from a stage-06 record (`save_alpha`'s fields), the one the run
    predicts with last; with added terms also the training-point votes alone (what they bring without Module I/IV).
    `modules` (pipeline.modules_name) names the Modules I-IV the fused rows stand on."""
    alpha, by_freq, terms = rec["alpha"], rec.get("by_frequency"), rec.get("terms")
    modules = modules or "Modules I-IV"
    out = [("MUFIN-(alpha=1)", fuse(emb, rnk, shortlist, 1.0, n_labels)),
           ("Module IV only (alpha=0)", fuse(emb, rnk, shortlist, 0.0, n_labels)),
           (paper_fusion_name(alpha, modules), fuse(emb, rnk, shortlist, alpha, n_labels))]
    name = ("alpha by label frequency; " + ", ".join(f"{n}: {a:g}" for n, a in zip(by_freq["bins"], by_freq["alphas"]))
            if by_freq else f"alpha={terms['alpha']:g}" if terms else "")
    extra = 0.0
    if terms:
        if terms.get("votes"):
            out.append((f"training-point votes alone (Module I, {terms['vote_neighbours']} neighbours)",
                        fuse(votes, votes, shortlist, 1.0, n_labels)))
        wr = terms.get("without_ranker")
        if wr:
            out.append(("MUFIN-(alpha=1) + " + _terms_words(terms, wr).lstrip(" +") + " (no Module IV)",
                        fuse(emb, rnk, shortlist, 1.0, n_labels, added({**terms, **wr}, votes, prior))))
        extra = added(terms, votes, prior)
        name += _terms_words(terms, terms)
    if by_freq or terms:
        out.append((f"MUFIN (kit fusion {name}; {modules})", fuse(emb, rnk, shortlist, per_label if by_freq else terms["alpha"], n_labels, extra)))
    return out


@dataclass
class FusionParams:
    """What a trained MUFIN fuses with, once: score = alpha * <x^1, z_l^1> + (1 - alpha) * ranker
    + vote_weight * votes + prior_weight * log-popularity, with one alpha per label-frequency bin when `bin_edges` is
    set. `paper_alpha` is the alpha of the paper's score alone (tuned without the added terms): a row of the tables,
    never what prediction uses."""
    alpha: float
    paper_alpha: float
    vote_weight: float = 0.0
    prior_weight: float = 0.0
    vote_neighbours: int = 20  # Module I's nearest fit points that vote
    added_terms: bool = False  # stage 06 tuned the terms (their weights may still be 0)
    bin_edges: str = ""  # "2,5,20": bins 0-1, 2-4, 5-19, 20+ of training points per label ("": one alpha)
    bin_alphas: list = field(default_factory=list)  # one alpha per bin

    @classmethod
    def from_record(cls, rec: dict) -> "FusionParams":
        """From stage 06's validation record (alpha.json: `save_alpha`'s fields)."""
        terms, by = rec.get("terms") or {}, rec.get("by_frequency") or {}
        return cls(alpha=float(terms.get("alpha", rec["alpha"])), paper_alpha=float(rec["alpha"]),
                   vote_weight=float(terms.get("vote_weight", 0.0)), prior_weight=float(terms.get("prior_weight", 0.0)),
                   vote_neighbours=int(terms.get("vote_neighbours", 20)), added_terms=bool(terms),
                   bin_edges=by.get("edges", ""), bin_alphas=[float(a) for a in by.get("alphas", [])])

    def label_alpha(self, Y_fit: sp.csr_matrix) -> float | np.ndarray:
        """One alpha, or one per label from its bin of fit-point frequency."""
        if not self.bin_edges:
            return self.alpha
        bins, _ = label_bins(Y_fit, self.bin_edges)
        return np.asarray(self.bin_alphas, np.float64)[bins]  # as stage 06 evaluated them

    def extra(self, votes, prior):
        """vote_weight * votes + prior_weight * log-popularity (0 when stage 06 added no terms)."""
        return added(asdict(self), votes, prior) if self.added_terms else 0.0

    def save(self, folder: str | Path) -> Path:
        f = Path(folder) / FUSION
        with atomic_write(f) as out:
            json.dump(asdict(self), out, indent=2)
        return f

    @classmethod
    def load(cls, folder: str | Path) -> "FusionParams":
        f = Path(folder) / FUSION
        if not f.exists():
            raise FileNotFoundError(f"{f}: missing (stage 06, evaluate, saves what prediction fuses with)")
        rec = json.loads(f.read_text())
        unknown = set(rec) - set(cls.__dataclass_fields__)
        if unknown or not 0.0 <= rec.get("alpha", -1) <= 1.0:
            raise ValueError(f"{f}: expected FusionParams fields with alpha in [0, 1]; got {sorted(rec)}")
        return cls(**rec)
