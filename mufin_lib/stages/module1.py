"""Stage 02, module1: Module I trained on the run's dataset (and its modality twins), evaluated beside the frozen
encoders of stage 01. The same training runs under torchrun:

    torchrun --nproc_per_node N -m mufin_lib.stages.module1 --run-dir runs/<id> [-p key=value ...]

with the parameters notebook 02 has in that run; `mufin run --resume <id> --only 02,...` then picks it up.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..baselines import frozen_nn
from ..bags import bag_source
from ..config import choice, ranged
from ..data.xc import carve_validation, split_of
from ..layout import METRICS
from ..module1 import evaluate_model, train
from ..report import write_metrics, write_table
from ..training import discard_stale_checkpoints
from .torchrun import entry, report_rank0


@dataclass
class Module1Params:
    """Stage 02's parameters; the defaults are the smoke size (notebook 02's parameters cell equals them)."""
    epochs: int = ranged(4, 1)  # paper: 200
    lr: float = ranged(2e-4, 0, lo_open=True)
    batch_size: int = ranged(256, 2)  # paper: 1024
    # infonce (the kit's default): multi-positive InfoNCE over the batch's labels at `temperature`. triplet: the
    # paper's margin loss on the hardest in-batch pairs (the paper preset); on complementary co-purchases it
    # collapsed the label vectors into one cone (REPRODUCE.md)
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
    # the share of the other training points that every stage fits on (benchmarks/data_size.py: 0.25, 0.5, 1)
    fit_share: float = ranged(1.0, 0, 1, lo_open=True)
    keep_top_k: int = ranged(15, 1)
    modalities: str = choice("text+image", "text", "image")  # text | image | text+image
    D: int = ranged(192, 1)  # working width of the model (authors' code: 192)
    freeze_encoders: bool = True  # False: fine-tune E_T and E_V too (the paper; slow on a CPU)
    encoder_lr: float = ranged(2e-5, 0)  # learning rate of the encoders when fine-tuned
    text_encoder: str = "all-MiniLM-L6-v2"
    image_encoder: str = "efficientnet-lite0"  # "": text only
    # stage 02 also trains these twins with the same settings ("", text, image, text,image): off unless a preset asks
    # (hm: "does the photo help?"), since each twin is a second Module I
    compare_modalities: str = ""
    self_attention: bool = True  # False: the "no A_S" ablation, a feed-forward layer in its place (Modules I-IV)
    # kit: keep the epoch with the best validation P@1, the untrained start among the candidates (the paper keeps the
    # last epoch: the paper preset sets False)
    select_epoch: bool = True
    mixed_precision: bool = False  # bfloat16 autocast of the training steps on a GPU (no effect on a CPU; not measured here)
    seed: int = ranged(0, 0)  # numpy and torch seeds: 0 or more


def load_params(run) -> Module1Params:
    """The parameters the run's Module I was trained with, as stage 02's Params."""
    return Module1Params(**vars(run.module1_saved))


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
    table: pd.DataFrame  # Module I (each variant) on val and test, beside the frozen encoders
    histories: dict  # variant -> per-epoch loss and validation metrics
    timing: dict  # variant -> total and per-epoch seconds
    summary: dict  # metrics.json


RESULT_COLUMNS = ["data", "model", "split", "P@1", "P@3", "P@5", "nDCG@5", "PSP@1", "PSP@5"]


def stage(run, params: Module1Params, progress: bool = True) -> Module1Result:
    """Train each variant (resuming from its checkpoints), evaluate it on validation and test beside the frozen
    encoders of stage 01; the main variant is the run's Module I (run_dir/module1). Writes module1_results.* and
    metrics.json."""
    ds, out_dir = run.dataset, run.stage("module1")
    emb = run.embeddings_for(params.text_encoder, params.image_encoder)
    inv_p = run.inv_propensity()  # the run's A, B (stage 01)
    fit_val = carve_validation(ds.Y["train"].shape[0], params.val_fraction, params.seed, params.val_max,
                               params.fit_share)
    splits = {s: split_of(ds, s, *fit_val, params.seed) for s in ("val", "test")}
    results, histories, timing = [], {}, {}
    for name, p in variants(params).items():
        out = variant_dir(out_dir, name, params)
        discard_stale_checkpoints(out, p)
        t0 = time.time()
        model, state = train(ds, emb, out, p, progress=progress)
        histories[name] = state.history
        timing[name] = {"total_s": round(time.time() - t0, 1),
                        "s_per_epoch": round(sum(h["seconds"] for h in state.history) / max(1, len(state.history)), 2),
                        "selected_epoch": state.selected_epoch,  # None: the last (select_epoch off)
                        "start_val_P@1": (state.start or {}).get("val_P@1")}
        table = bag_source(model, ds, emb, p)
        for split in ("val", "test"):
            results.append({"data": run.data_name, "model": f"Module I ({name})", "split": split,
                            **evaluate_model(model, table, splits[split], ds.uids["label"], inv_p)})
    frozen = [{"data": run.data_name, "model": f"frozen encoders ({m})", "split": "test",
               **{k: v for k, v in frozen_nn(ds, emb, "test", m, A=run.propensity["A"], B=run.propensity["B"]).items() if k not in ("modality", "split")}}
              for m in (["text", "image", "text+image"] if params.image_encoder else ["text"])]
    table = pd.DataFrame(frozen + results)
    test = table[table.split == "test"].set_index("model")
    main = next(iter(histories))
    summary = {"data": run.data_title, "synthetic": run.synthetic, "timing": timing,
               "results": table.to_dict("records"), "propensity": run.propensity, "history": histories,
               "module1_minus_frozen_P@1": round(test.loc[f"Module I ({main})", "P@1"]
                                                 - test.loc[f"frozen encoders ({main})", "P@1"], 4)}
    for twin in ("text", "image"):
        if {twin, "text+image"} <= set(histories):
            summary[f"text+image_minus_{twin}_P@1"] = round(test.loc["Module I (text+image)", "P@1"]
                                                            - test.loc[f"Module I ({twin})", "P@1"], 4)
    write_table(table[RESULT_COLUMNS], out_dir, "module1_results", caption=f"Module I vs frozen encoders ({run.data_title})")
    write_metrics(out_dir, summary, METRICS)
    return Module1Result(table, histories, timing, summary)


def main(argv=None) -> int:
    """torchrun entry: trains the run's Module I with the parameters notebook 02 has in that run (run.json: preset,
    overrides), -p overrides applied by the runner's parser."""
    run, params, out = entry("mufin_lib.stages.module1", "02", Module1Params, "module1", argv)
    name, p = next(iter(variants(params).items()))
    _, state = train(run.dataset, run.embeddings_for(p.text_encoder, p.image_encoder),
                     out or variant_dir(run.stage("module1"), name, params), p)
    report_rank0(epochs=state.epoch, variant=name, last=state.history[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
