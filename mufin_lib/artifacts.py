"""One finished (or partly finished) run, opened by one call: `run = open_run("runs/<id>")`.

Every notebook from 02 on, `mufin predict`, the torchrun entries and the benchmarks open a run this way and
nothing else: the run object knows where each stage wrote what, and loads it lazily, once.

    run.dataset, run.info           stage 01 (dataset/dataset.json names the dataset's root)
    run.module1_params, .module1    stage 02 (module1/model.pt carries its parameters)
    run.embeddings, run.bags        the cached encoder outputs and the bag source Module I reads
    run.split("val"|"test"|...)     uids, truth and filter of a split (validation carved as in training)
    run.index                       stage 03 (module2/index)
    run.shortlists(split)           stage 04 (module3/shortlist_<split>.npz)
    run.ranker                      stage 05 (module4/model.pt)
    run.alpha                       stage 06 (evaluate/alpha.json: alpha, its metric and validation curve)
    run.stage(name)                 a stage's folder (created)
A missing stage raises FileNotFoundError naming the notebook to run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .paths import RUNS_DIR, resolve

STAGES = {"dataset": "01_curate_dataset", "module1": "02_module1_siamese", "module2": "03_module2_retrieval",
          "module3": "04_module3_shortlists", "module4": "05_module4_ranker", "evaluate": "06_evaluate",
          "peers": "07_peers"}


@dataclass
class Split:
    """A split's points: their UIDs, truth (points x labels) and filter pairs (rows renumbered to the split)."""
    name: str
    uids: list
    Y: sp.csr_matrix
    filter: np.ndarray


class Run:
    def __init__(self, run_dir: str | Path):
        self.dir = resolve(run_dir)

    def __repr__(self) -> str:
        done = [s for s in STAGES if (self.dir / s).is_dir()]
        return f"Run({self.dir}, stages: {', '.join(done) or 'none'})"

    def stage(self, name: str) -> Path:
        out = self.dir / name
        out.mkdir(parents=True, exist_ok=True)
        return out

    def _need(self, stage: str, *parts: str) -> Path:
        f = self.dir.joinpath(stage, *parts)
        if not f.exists():
            raise FileNotFoundError(f"{f}: missing; run notebook {STAGES[stage]} first "
                                    f"(mufin run --resume {self.dir.name} --only {STAGES[stage][:2]})")
        return f

    def metrics(self, stage: str) -> dict:
        """A finished stage's metrics.json."""
        return json.loads(self._need(stage, "metrics.json").read_text())

    # ---- provenance ---------------------------------------------------------------------------------
    @cached_property
    def record(self) -> dict:
        """run.json (preset, parameters per notebook, provenance); {} for a folder the runner did not make."""
        f = self.dir / "run.json"
        return json.loads(f.read_text()) if f.exists() else {}

    # ---- stage 01 -----------------------------------------------------------------------------------
    @cached_property
    def info(self) -> dict:
        return json.loads(self._need("dataset", "dataset.json").read_text())

    @property
    def root(self) -> Path:
        """The dataset's root folder (XC layout); runs made before the rename stored it as 'path'."""
        return Path(self.info.get("root") or self.info["path"])

    @cached_property
    def dataset(self):
        from .data.xc import read_xc
        return read_xc(self.root)

    @property
    def synthetic(self) -> bool:
        return bool(self.info["synthetic"])

    @property
    def data_name(self) -> str:
        """The data's short name in tables ("synthetic", "Amazon Gift_Cards", ...)."""
        return self.info["data_label"]

    @property
    def data_title(self) -> str:
        """What every caption and figure title says of the data: synthetic results are labelled so."""
        return "SYNTHETIC catalogue" if self.synthetic else f"real data: {self.data_name}"

    def embeddings_for(self, text_encoder: str, image_encoder: str):
        from .encoders import embed_dataset
        return embed_dataset(self.root, text_encoder=text_encoder, image_encoder=image_encoder)

    # ---- stage 02 -----------------------------------------------------------------------------------
    @cached_property
    def module1_params(self):
        from .module1 import load_params
        return load_params(self._need("module1", "model.pt").parent)

    @cached_property
    def module1(self):
        from .module1 import load_model
        return load_model(self._need("module1", "model.pt").parent, self.dataset)

    @cached_property
    def embeddings(self):
        """The frozen encoders' cached outputs Module I was trained on; None when it fine-tuned them."""
        p = self.module1_params
        return self.embeddings_for(p.text_encoder, p.image_encoder) if p.freeze_encoders else None

    @cached_property
    def bags(self):
        from .bags import bag_source
        return bag_source(self.module1, self.dataset, self.embeddings, self.module1_params)

    @cached_property
    def label_rows(self) -> np.ndarray:
        return self.bags.rows_of(self.dataset.uids["label"])

    @cached_property
    def carve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fit rows, validation rows) of train, as Module I carved them."""
        from .module1 import carve
        return carve(self.dataset, self.module1_params)

    @cached_property
    def val_halves(self) -> dict[str, np.ndarray]:
        """Positions within the validation split of its two halves: "val-epoch" chooses Module IV's epoch,
        "val-alpha" chooses alpha."""
        from .data.xc import validation_halves
        a, b = validation_halves(len(self.carve[1]), self.module1_params.seed)
        return {"val-epoch": a, "val-alpha": b}

    def split(self, name: str) -> Split:
        """"train", "test", "val" (carved from train as Module I carved it), or a half of it: "val-epoch",
        "val-alpha"."""
        from .data.xc import validation_filter
        ds = self.dataset
        if name == "val":
            fit, val = self.carve
            return Split("val", [ds.uids["train"][i] for i in val], ds.Y["train"][val], validation_filter(ds, fit, val))
        if name in ("val-epoch", "val-alpha"):
            v, pick = self.split("val"), self.val_halves[name]
            return Split(name, [v.uids[i] for i in pick], v.Y[pick], filter_rows(v.filter, pick))
        return Split(name, ds.uids[name], ds.Y[name], ds.filters[name])

    def inv_propensity(self, A: float = 0.6, B: float = 2.6) -> np.ndarray:
        from .metrics import inv_propensity
        return inv_propensity(self.dataset.Y["train"], A, B)

    # ---- stages 03-04 -------------------------------------------------------------------------------
    @cached_property
    def index(self):
        from .retrieval import LabelIndex
        return LabelIndex.load(self._need("module2", "index", "index.json").parent)

    @cached_property
    def fit_embeddings(self):
        """Module I's embeddings x^1 of the fit points (train minus validation), row i for carve[0][i]."""
        from .bags import embed_rows
        return embed_rows(self.module1, self.bags, self.bags.rows_of([self.dataset.uids["train"][i] for i in self.carve[0]]))

    def train_votes(self, neighbours: int):
        """Module III's training-point votes (retrieval.TrainVotes) over the fit points."""
        from .retrieval import TrainVotes
        if getattr(self, "_votes", None) is None or self._votes.neighbours != neighbours:
            self._votes = TrainVotes(self.fit_embeddings, self.dataset.Y["train"][self.carve[0]], neighbours)
        return self._votes

    def label_centroids(self):
        """Module III's label centroids (retrieval.LabelCentroids) over the fit points' Module I embeddings."""
        from .retrieval import LabelCentroids
        if getattr(self, "_centroids", None) is None:
            self._centroids = LabelCentroids(self.fit_embeddings, self.dataset.Y["train"][self.carve[0]])
        return self._centroids

    @cached_property
    def shortlist_params(self):
        """How stage 04 made the shortlists (module3/shortlist.json; the index alone for runs made before it)."""
        from .retrieval import RetrievalParams
        f = self.dir / "module3" / "shortlist.json"
        return RetrievalParams(**json.loads(f.read_text())) if f.exists() else RetrievalParams()

    def shortlists(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) of a split's shortlists, checked against the split's points."""
        from .retrieval import load_shortlist
        if split in ("val-epoch", "val-alpha"):
            scores, labels = self.shortlists("val")
            return scores[self.val_halves[split]], labels[self.val_halves[split]]
        f = self._need("module3", f"shortlist_{split}.npz")
        scores, labels, uids = load_shortlist(f)
        if uids != self.split(split).uids:
            raise ValueError(f"{f}: its points are not the run's {split} points; run notebook 04 again")
        return scores, labels

    # ---- stages 05-06 -------------------------------------------------------------------------------
    @cached_property
    def ranker(self):
        from .ranker import load_ranker
        return load_ranker(self._need("module4", "model.pt").parent, self.module1, self.dataset.num_labels)

    @cached_property
    def alpha_record(self) -> dict:
        from .fusion import load_alpha
        return load_alpha(self._need("evaluate", "alpha.json").parent)

    @property
    def alpha(self) -> float:
        return self.alpha_record["alpha"]


def filter_rows(filt: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """The filter pairs of the rows `pick` (sorted), renumbered 0..len(pick)-1."""
    pos = {int(r): i for i, r in enumerate(pick)}
    kept = [(pos[int(r)], int(c)) for r, c in filt if int(r) in pos]
    return np.asarray(kept, np.int64).reshape(-1, 2)


def open_run(run_dir: str | Path) -> Run:
    """A run folder (runs/<id>, or a run id under runs/). "" is runs/interactive/, where a notebook opened
    alone in JupyterLab writes."""
    if str(run_dir) == "":
        return Run(RUNS_DIR / "interactive")
    p = resolve(run_dir)
    if not p.is_dir() and (RUNS_DIR / str(run_dir)).is_dir():
        p = RUNS_DIR / str(run_dir)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such run folder (runs are under {RUNS_DIR})")
    return Run(p)
