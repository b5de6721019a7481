"""The one list of stages and the names of the files they write, read by the writers (stages/) and by `Run`.

A stage has one name everywhere: its number, its run folder, its module under `mufin_lib/stages/` and the word
after the number in its notebook (`04` -> `module3/`, `stages/module3.py`, `04_module3_shortlists.ipynb`).
This module imports nothing of the kit, so everything may read it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    number: str  # "04"
    name: str  # "module3": the run folder and the module mufin_lib.stages.<name>
    notebook: str  # "04_module3_shortlists"
    params: str  # the Params class in mufin_lib.stages.<name>

    @property
    def module(self) -> str:
        return f"mufin_lib.stages.{self.name}"


STAGES = (
    Stage("01", "dataset", "01_dataset_curation", "DatasetParams"),
    Stage("02", "module1", "02_module1_siamese", "Module1Params"),
    Stage("03", "module2", "03_module2_retrieval", "Module2Params"),
    Stage("04", "module3", "04_module3_shortlists", "Module3Params"),
    Stage("05", "module4", "05_module4_ranker", "Module4Params"),
    Stage("06", "evaluate", "06_evaluate", "EvaluateParams"),
    Stage("07", "peers", "07_peers", "PeersParams"),
    Stage("08", "ablations", "08_ablations", "AblationsParams"),
    Stage("09", "per_category", "09_per_category", "PerCategoryParams"),
    Stage("10", "head_tail", "10_head_tail", "HeadTailParams"),
    Stage("11", "benchmarks", "11_benchmarks", "BenchmarksParams"),
    Stage("12", "qualitative", "12_qualitative", "QualitativeParams"),
    Stage("13", "scaling", "13_scaling", "ScalingParams"),
    Stage("14", "outfits", "14_outfits", "OutfitsParams"),
)
BY_NUMBER = {s.number: s for s in STAGES}
BY_NAME = {s.name: s for s in STAGES}

# files every stage writes in its folder
METRICS = "metrics.json"  # the stage Result's summary
HISTORY = "history.json"  # per-epoch training record (stages 02, 05)
MODEL = "model.pt"  # a trained network (stages 02, 05)
CHECKPOINTS = "checkpoints"  # per-epoch checkpoints of a training stage (last.pt, best.pt)

# stage-specific files
DATASET_INFO = "dataset.json"  # dataset/: the dataset's root (XC layout) and what it came from
INDEX_DIR = "index"  # module2/index/: the saved faiss index (index.json, index.faiss, owner.npy)
SHORTLIST = "shortlist_{split}.npz"  # module3/: a split's shortlists
SHORTLIST_PARAMS = "shortlist.json"  # module3/: how the shortlists were made (prediction makes them so)
VOTE_NEIGHBOURS = "vote_neighbours_{split}.npz"  # module3/: a split's vote neighbours (val, test), for 06, 07 and 08
FIT_EMBEDDINGS = "fit_embeddings.npz"  # module3/: Module I's x^1 of the fit points (the voters), for 05-08
VOTE_INDEX = "votes.faiss"  # module3/ and a model folder: the HNSW index the votes search, where stage 04 chose one
ALPHA = "alpha.json"  # evaluate/: how alpha and the added terms were chosen on validation (curves)
FUSION = "fusion.json"  # evaluate/: FusionParams, what prediction fuses with
TEST_SCORES = "test_scores.npz"  # evaluate/, peers/: every row's sparse test scores (what later stages read, never retrain)

# PSP propensity constants A, B (Jain et al. 2016) as pyxclib sets them: Amazon data sets 0.6 / 2.6, others
# 0.55 / 1.5. A data set's manifest (data_manifest/NAME.yaml, `propensity`) says which; stage 01 records the run's
# values and every stage that prints PSP reads them from the run (Run.propensity)
PROPENSITY_AMAZON = (0.6, 2.6)
PROPENSITY_OTHER = (0.55, 1.5)
PROPENSITY_A, PROPENSITY_B = PROPENSITY_OTHER  # where nothing says otherwise (a metric called without a run)


def command_for(stage: Stage, run_name: str) -> str:
    """What to run when a stage's output is missing."""
    return f"run notebook {stage.notebook} first (mufin run --resume {run_name} --only {stage.number})"
