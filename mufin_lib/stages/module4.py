"""Stage 05, module4: Module IV (the label-adapted ranker) trained on the train shortlists of stage 04, its epoch
chosen on one half of validation (stage 06 tunes the fusion on the other). The same training runs under torchrun:

    torchrun --nproc_per_node N -m mufin_lib.stages.module4 --run-dir runs/<id> [-p key=value ...]

after stages 01-04 of that run; `mufin run --resume <id> --only 05,06` then picks it up.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import choice, ranged
from ..data.xc import filter_rows, own_label
from ..encoders import file_digest
from ..layout import METRICS, MODEL, SHORTLIST
from ..ranker import Validation, build_ranker, train_ranker
from ..report import write_metrics
from ..training import discard_stale_checkpoints
from .torchrun import entry, report_rank0


@dataclass
class Module4Params:
    """Stage 05's parameters (notebook 05's parameters cell equals these defaults)."""
    epochs: int = ranged(3, 1)  # paper: 20
    lr: float = ranged(5e-5, 0, lo_open=True)  # Table 5
    encoder_lr: float = ranged(5e-5, 0)  # Module I's bottlenecks and A_S (paper 5e-5; authors' code 1e-5)
    classifier_lr: float = ranged(0.0, 0)  # the one-vs-all free vectors and their mix (0: lr; authors' code 5e-3)
    batch_size: int = ranged(200, 1)  # Table 5
    positives: int = ranged(2, 1)  # |S_i|
    negatives: int = ranged(12, 0)  # |T_i|, hard, from the shortlist
    margin: float = ranged(0.5, -1, 1)
    # negatives from the shortlist: "top" takes the highest-ranked non-positives (the kit's reading of the paper's
    # "hard negatives"); "rank" samples them, probability 1 / (rank + 1) (the authors' code samples by score)
    negative_sampling: str = choice("top", "rank")
    # drop a shortlisted negative whose Module I label embedding has cosine above this with one of the point's
    # positives: a near-duplicate of a positive (colour variant) is likely an unlabelled positive. 1: keep all;
    # authors' code: 0.9 (max_csim)
    max_csim: float = ranged(1.0, -1, 1)
    loss: str = choice("cosine_embedding", "softmax")  # paper | "softmax": a kit option, listwise over each point's S_i and T_i
    temperature: float = ranged(0.1, 0, lo_open=True)  # softmax loss only
    warmup_steps: int = ranged(20, 0)
    schedule: str = choice("cosine", "linear")
    weight_decay: float = ranged(0.01, 0)
    grad_clip: float = ranged(1.0, 0, lo_open=True)
    train_encoder: bool = True  # paper: Module I's layers train on; False freezes them
    reinit_self_attention: bool = False  # authors' code: A_S re-initialised in Module IV
    # authors' two ranker stages: first `frozen_epochs` on Module I's frozen features (MufinXAttnRanker, 20 epochs),
    # then `epochs` with them training at encoder_lr (MufinXAttnRankerpp). 0: the encoder trains from the start
    frozen_epochs: int = ranged(0, 0)
    mix: str = choice("global", "per_label")  # w_l's mix of free vector and z_l: one weight (kit) | one per label (authors' code)
    combiner: str = choice("cross_attention", "concat", "none")  # cross_attention (A_C) | concat ("ConCat" ablation) | none ("no A_C")
    # kit: keep the epoch whose fused score (best alpha) has the best P@1 on `val_points` validation points
    # (the paper keeps the last epoch). patience > 0 also stops after that many epochs without a gain.
    select_epoch: bool = True
    val_points: int = ranged(1000, 1)
    patience: int = ranged(0, 0)
    mixed_precision: bool = False  # bfloat16 autocast of the training steps on a GPU (no effect on a CPU; not measured here)
    seed: int = ranged(0, 0)  # numpy and torch seeds: 0 or more



@dataclass
class Module4Result:
    ranker: object  # the trained Ranker (the selected epoch)
    history: list  # per epoch: loss, seconds, validation metrics, selected
    selected_epoch: int
    summary: dict  # metrics.json


def _validation(run, params: Module4Params, point_rows: np.ndarray, short_train: np.ndarray) -> Validation | None:
    """The per-epoch check on the validation half that chooses the epoch (a fixed, seeded subset keeps it cheap)."""
    val = run.carve[1]
    if not len(val) or not (params.select_epoch or params.patience):
        return None
    v, half = run.split("val-epoch"), val[run.val_halves["val-epoch"]]
    pick = np.arange(len(half))
    if params.val_points < len(half):
        pick = np.sort(np.random.default_rng(params.seed).choice(len(half), params.val_points, replace=False))
    return Validation(run.module1, run.bags, point_rows[half][pick], run.label_rows, short_train[half][pick],
                      v.Y[pick], filter_rows(v.filter, pick), run.inv_propensity(tuning=True))


def train(run, params: Module4Params, out: str | Path | None = None, progress: bool = True):
    """Module IV on the fit points (validation points stay out of training); saved under run_dir/module4 (or
    `out`). Returns (ranker, history)."""
    ds = run.dataset
    fit = run.carve[0]
    keep = np.zeros(ds.Y["train"].shape[0], bool)
    keep[fit] = True
    Y_fit = ds.Y["train"].multiply(keep[:, None]).tocsr()  # validation points stay out of training
    Y_fit.eliminate_zeros()
    _, short_train = run.shortlists("train")
    point_rows = run.bags.rows_of(ds.uids["train"])
    validate = _validation(run, params, point_rows, short_train)
    out = Path(out) if out else run.stage("module4")
    # Module IV trains on Module I's model and stage 04's shortlists: a change in either starts it afresh
    discard_stale_checkpoints(out, params, inputs=file_digest([run.dir / "module1" / MODEL,
                                                               run.dir / "module3" / SHORTLIST.format(split="train")]))
    ranker = build_ranker(run.module1, ds.num_labels, params)
    return train_ranker(ranker, run.bags, Y_fit, point_rows, run.label_rows, short_train, own_label(ds, "train"),
                        out, params, progress=progress, validate=validate)


def stage(run, params: Module4Params, progress: bool = True) -> Module4Result:
    """Train Module IV (resuming from its checkpoints) and write metrics.json."""
    ranker, history = train(run, params, progress=progress)
    selected = next((h["epoch"] for h in history if h.get("selected")), len(history))
    summary = {"data": run.data_title, "synthetic": run.synthetic, "params": asdict(params), "history": history,
               "selected_epoch": selected, "s_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 2)}
    write_metrics(run.stage("module4"), summary, METRICS)
    return Module4Result(ranker, history, selected, summary)


def main(argv=None) -> int:
    """torchrun entry, with the parameters notebook 05 has in that run (run.json) and -p overrides through the
    runner's parser."""
    run, params, out = entry("mufin_lib.stages.module4", "05", Module4Params, "module4", argv)
    _, history = train(run, params, out=out)
    report_rank0(epochs=len(history), last=history[-1] if history else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
