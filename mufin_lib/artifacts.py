"""One finished (or partly finished) run, opened by one call: `run = open_run("runs/<id>")`.

The stages (mufin_lib.stages), prediction and the benchmarks open a run this way. The run object knows where each
stage wrote what (mufin_lib.layout) and loads it lazily, once, through the method modules' own loaders; it runs
nothing and imports no stage.

    run.dataset, run.info           stage 01 (dataset/dataset.json names the dataset's root)
    run.module1, .module1_saved     stage 02 (module1/model.pt carries its parameters)
    run.embeddings, run.bags        the cached encoder outputs and the bag source Module I reads
    run.split(name)                 uids, truth and filter of train, fit, val, val-epoch, val-alpha or test
    run.index                       stage 03 (module2/index)
    run.shortlists(split)           stage 04 (module3/shortlist_<split>.npz)
    run.ranker                      stage 05 (module4/model.pt)
    run.pipeline, .modules_name     how its Modules I-IV differ from the paper's (named in every fused row)
    run.fusion, run.alpha_record    stage 06 (evaluate/fusion.json: what prediction fuses with; alpha.json: how)
    run.stage(name)                 a stage's folder (created)
A missing stage raises FileNotFoundError naming the notebook to run.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from . import layout
from .bags import bag_source, embed_rows
from .data.xc import Split, carve_validation, read_xc, split_of, validation_halves
from .encoders import embed_dataset, file_digest
from .fusion import FusionParams, load_alpha, log_popularity
from .metrics import inv_propensity
from .module1 import load_model, saved_params
from .paths import RUNS_DIR, resolve
from .pipeline import differences, modules_name
from .ranker import load_ranker
from .retrieval import (VOTE_HNSW, LabelCentroids, LabelIndex, TrainVotes, VectorIndex, load_fit_embeddings,
                        load_shortlist, load_vote_neighbours)


class Run:
    def __init__(self, run_dir: str | Path):
        self.dir = resolve(run_dir)

    def __repr__(self) -> str:
        done = [s.name for s in layout.STAGES if (self.dir / s.name).is_dir()]
        return f"Run({self.dir}, stages: {', '.join(done) or 'none'})"

    def stage(self, name: str) -> Path:
        if name not in layout.BY_NAME:
            raise ValueError(f"no stage '{name}' (stages: {', '.join(layout.BY_NAME)})")
        out = self.dir / name
        out.mkdir(parents=True, exist_ok=True)
        return out

    def need(self, stage: str, *parts: str) -> Path:
        f = self.dir.joinpath(stage, *parts)
        if not f.exists():
            raise FileNotFoundError(f"{f}: missing; {layout.command_for(layout.BY_NAME[stage], self.dir.name)}")
        return f

    def metrics(self, stage: str) -> dict:
        """A finished stage's metrics.json (its Result's summary)."""
        return json.loads(self.need(stage, layout.METRICS).read_text())

    # ---- stage 01 -----------------------------------------------------------------------------------
    @cached_property
    def info(self) -> dict:
        return json.loads(self.need("dataset", layout.DATASET_INFO).read_text())

    @property
    def root(self) -> Path:
        """The dataset's root folder (XC layout); runs made before the rename stored it as 'path'."""
        return Path(self.info.get("root") or self.info["path"])

    @cached_property
    def dataset(self):
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
        return embed_dataset(self.root, text_encoder=text_encoder, image_encoder=image_encoder)

    # ---- stage 02 -----------------------------------------------------------------------------------
    @cached_property
    def module1_saved(self) -> SimpleNamespace:
        """The parameters Module I was trained with (module1/model.pt), by attribute; stages.module1.load_params
        gives them as stage 02's typed Module1Params."""
        return SimpleNamespace(**saved_params(self.need("module1", layout.MODEL).parent))

    @cached_property
    def module1(self):
        return load_model(self.need("module1", layout.MODEL).parent, self.dataset)

    @cached_property
    def embeddings(self):
        """The frozen encoders' cached outputs Module I was trained on; None when it fine-tuned them."""
        p = self.module1_saved
        return self.embeddings_for(p.text_encoder, p.image_encoder) if p.freeze_encoders else None

    @cached_property
    def bags(self):
        return bag_source(self.module1, self.dataset, self.embeddings, self.module1_saved)

    @cached_property
    def label_rows(self) -> np.ndarray:
        return self.bags.rows_of(self.dataset.uids["label"])

    @cached_property
    def carve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fit rows, validation rows) of train, as Module I carved them."""
        p = self.module1_saved
        return carve_validation(self.dataset.Y["train"].shape[0], p.val_fraction, p.seed, p.val_max,
                                getattr(p, "fit_share", 1.0))  # runs made before it: every fit point

    @cached_property
    def val_halves(self) -> dict[str, np.ndarray]:
        """Positions within the validation split of its two halves: "val-epoch" chooses Module IV's epoch,
        "val-alpha" the fusion weights."""
        a, b = validation_halves(len(self.carve[1]), self.module1_saved.seed)
        return {"val-epoch": a, "val-alpha": b}

    def split(self, name: str) -> Split:
        """"train", "fit" (train minus validation), "test", "val" (carved from train as Module I carved it), or a
        half of it: "val-epoch", "val-alpha"."""
        return split_of(self.dataset, name, *self.carve, self.module1_saved.seed)

    @cached_property
    def propensity(self) -> dict:
        """PSP's A, B for this run's data (stage 01 took them from the data set's manifest) and where they came from;
        runs made before stage 01 recorded them used pyxclib's Amazon values."""
        rec = self.metrics("dataset").get("propensity")
        if rec:
            return rec
        A, B = layout.PROPENSITY_AMAZON
        return {"A": A, "B": B, "from": "the kit's value before stage 01 recorded one"}

    def inv_propensity(self, tuning: bool = False) -> np.ndarray:
        """Inverse propensities at the run's A, B from train label counts; `tuning`: from the fit points only (train
        minus validation), for a metric that chooses something on validation."""
        Y = self.fit_labels if tuning else self.dataset.Y["train"]
        return inv_propensity(Y, self.propensity["A"], self.propensity["B"])

    # ---- stages 03-04 -------------------------------------------------------------------------------
    @cached_property
    def index(self) -> LabelIndex:
        return LabelIndex.load(self.need("module2", layout.INDEX_DIR, "index.json").parent)

    @cached_property
    def module1_sha(self) -> str:
        """The checksum of Module I's model file: what stage 04's saved fit embeddings were made by."""
        return file_digest([self.need("module1", layout.MODEL)])

    @cached_property
    def fit_embeddings(self) -> np.ndarray:
        """Module I's embeddings x^1 of the fit points (train minus validation), row i for carve[0][i]: stage 04's
        (module3/fit_embeddings.npz) where it saved them with this Module I, else embedded here."""
        uids = self.split("fit").uids
        saved = load_fit_embeddings(self.dir / "module3" / layout.FIT_EMBEDDINGS, uids, self.module1_sha)
        return saved if saved is not None else embed_rows(self.module1, self.bags, self.bags.rows_of(uids))

    @cached_property
    def fit_labels(self):
        """The fit points' labels: what votes, centroids and label frequencies count, so that a validation point's
        own labels never count towards what is tuned on it."""
        return self.split("fit").Y

    @cached_property
    def vote_index(self) -> VectorIndex:
        """The index the votes search: stage 04's HNSW (module3/votes.faiss) where it chose one, else exact."""
        f = self.dir / "module3" / layout.VOTE_INDEX
        if self.shortlist_record.get("vote_index_chosen") != "hnsw":
            return VectorIndex(self.fit_embeddings)
        if not f.exists():  # exact search in its place would change every vote: refuse, as a model folder does
            raise FileNotFoundError(f"{f}: missing; module3/shortlist.json says stage 04 chose an HNSW vote index "
                                    f"saved there (run stage 04 again: mufin run --resume {self.dir.name} --only 04)")
        return VectorIndex.load(f, "hnsw", VOTE_HNSW["ef_search"])

    def found_neighbours(self, split: str, neighbours: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Stage 04's vote neighbours of a split's points (val and its halves, test), where it searched as many with
        the index the votes use now; None: the caller searches."""
        if self.shortlist_record.get("vote_neighbours") != neighbours:
            return None
        base = "val" if split.startswith("val") else split
        return load_vote_neighbours(self.dir / "module3" / layout.VOTE_NEIGHBOURS.format(split=base),
                                    self.split(split).uids)

    def train_votes(self, neighbours: int) -> TrainVotes:
        """Module III's training-point votes over the fit points."""
        if getattr(self, "_votes", None) is None or self._votes.neighbours != neighbours:
            self._votes = TrainVotes(self.fit_embeddings, self.fit_labels, neighbours, self.vote_index)
        return self._votes

    @cached_property
    def label_centroids(self) -> LabelCentroids:
        """Module III's label centroids over the fit points' Module I embeddings."""
        return LabelCentroids(self.fit_embeddings, self.fit_labels)

    @cached_property
    def popularity(self) -> np.ndarray:
        """log(1 + fit points) / log(1 + the most) per label: the fusion's prior term."""
        return log_popularity(self.fit_labels)

    @cached_property
    def shortlist_record(self) -> dict:
        """How stage 04 made the shortlists (module3/shortlist.json); {} for runs made before it was written."""
        f = self.dir / "module3" / layout.SHORTLIST_PARAMS
        return json.loads(f.read_text()) if f.exists() else {}

    def shortlists(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(scores, labels) of a split's shortlists, checked against the split's points."""
        if split in ("val-epoch", "val-alpha"):
            scores, labels = self.shortlists("val")
            return scores[self.val_halves[split]], labels[self.val_halves[split]]
        f = self.need("module3", layout.SHORTLIST.format(split=split))
        scores, labels, uids = load_shortlist(f)
        if uids != self.split(split).uids:
            raise ValueError(f"{f}: its points are not the run's {split} points; run notebook 04 again")
        return scores, labels

    # ---- stages 05-06 -------------------------------------------------------------------------------
    @cached_property
    def ranker(self):
        return load_ranker(self.need("module4", layout.MODEL).parent, self.module1, self.dataset.num_labels)

    @cached_property
    def pipeline(self) -> list[str]:
        """Where this run's Modules I-IV differ from the paper's, in words (mufin_lib.pipeline); [] for the paper's."""
        index = json.loads(self.need("module2", layout.INDEX_DIR, "index.json").read_text())
        m4 = self.metrics("module4")["params"]  # what stage 05 trained with (metrics.json: no model to load)
        return differences({"module1": vars(self.module1_saved), "module2": index["params"],
                            "module3": self.shortlist_record, "module4": m4})

    @cached_property
    def modules_name(self) -> str:
        """What the fused rows' names say of this run's Modules I-IV."""
        return modules_name(self.pipeline)

    @cached_property
    def alpha_record(self) -> dict:
        """How stage 06 chose alpha and the added terms on validation (alpha.json: metric, curve, terms)."""
        return load_alpha(self.need("evaluate", layout.ALPHA).parent)

    @cached_property
    def fusion(self) -> FusionParams:
        """What prediction fuses with (evaluate/fusion.json; from alpha.json for runs made before it)."""
        folder = self.dir / "evaluate"
        return FusionParams.load(folder) if (folder / layout.FUSION).exists() else FusionParams.from_record(self.alpha_record)


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
