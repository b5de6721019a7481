"""The paper's Table 4 ablations as named overrides of a preset (MUFIN_SPEC.md section 11), and the rows stage 08
computes on the main run without retraining. Plain data and words: the runner runs each variant into its own run
folder (`variant_run_id`), stage 08 reads them; nothing here knows runs or stages.

A variant's overrides are `NN.key=value` strings, as `mufin run -p` takes them, applied on top of the preset the
ablations run with. The paper's no +ve and no +ve,-ve change the hardest positive and negatives of the paper's triplet
loss: the kit's Module I (InfoNCE over every in-batch positive) has no hardest positive to replace, so they are
variants of "MUFIN as the paper specifies" and are compared with it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .pipeline import PAPER

# the stage that trains each module (pipeline.PAPER is keyed by module)
MODULE_STAGE = {"module1": "02", "module2": "03", "module3": "04", "module4": "05"}
# what stage 08 needs of every variant run: the chain through the fused test scores
CHAIN = ("01", "02", "03", "04", "05", "06")
NEVER = 1_000_000  # cluster_after: no clustered batches in any epoch


def _literal(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# the paper's Modules I-IV (pipeline.PAPER, one source) and its score (alpha alone, no added terms); Module IV keeps
# its last epoch, so nothing validates it per epoch (patience 0)
PAPER_PIPELINE = tuple(f"{MODULE_STAGE[m]}.{k}={_literal(v)}" for (m, k), v in PAPER.items()) + (
    "05.patience=0", "06.votes=false", "06.prior=false")


@dataclass(frozen=True)
class Variant:
    name: str  # the run id's suffix (`variant_run_id`) and the key of its row
    row: str  # the row's name in Table 4: what it computes (a variant of the kit's pipeline: two rows, see stage 08)
    overrides: tuple[str, ...]  # NN.key=value on top of the preset
    against: str  # "main" (the run's main row) or another variant's name
    paper: str = ""  # the paper's row in ../shared/paper_tables/table4_ablations.csv ("" none)


VARIANTS = (
    Variant("paper", "MUFIN as the paper specifies (triplet Module I, index-only shortlists, paper fusion; kit encoders)",
            PAPER_PIPELINE, "main"),
    Variant("paper-no-pos", "MUFIN as the paper specifies, no +ve (random positives in Module I)",
            PAPER_PIPELINE + ("02.positives=random",), "paper", "MUFIN-no +ve"),
    Variant("paper-no-pos-neg", "MUFIN as the paper specifies, no +ve,-ve (random positives and negatives, no clustered "
            "batches)", PAPER_PIPELINE + ("02.positives=random", "02.negatives=random", f"02.cluster_after={NEVER}"),
            "paper", "MUFIN-no +ve -ve"),
    Variant("ConCat", "MUFIN-ConCat (A_C replaced by concat(x^1, z_l^1) -> 2D -> 2D -> D)",
            ("05.combiner=concat",), "main", "MUFIN-ConCat"),
    Variant("no-A_S", "MUFIN-no A_S (a feed-forward layer for A_S in Modules I-IV)",
            ("02.self_attention=false",), "main", "MUFIN-no A_S"),
    Variant("no-A_C", "MUFIN-no A_C (x^{2,l} = x^1, then the classifiers)",
            ("05.combiner=none",), "main", "MUFIN-no A_C"),
)
BY_NAME = {v.name: v for v in VARIANTS}
# every variant run: no prediction timing (not part of the table); a variant that retrains Module I trains no modality
# twins (not part of the ablation), one that does not keeps stage 02's parameters, so that it reuses the main run's
VARIANT_COMMON = ("06.timing_points=0",)
NO_TWINS = "02.compare_modalities="


def selected(names: str) -> list[Variant]:
    """The variants named in `names` (comma-separated; "all": every one), in VARIANTS' order; an unknown name: an
    error listing them. A variant compared with another brings that one along."""
    if not names.strip():
        return []
    if names.strip() == "all":
        return list(VARIANTS)
    asked = [n.strip() for n in names.split(",") if n.strip()]
    for n in asked:
        if n not in BY_NAME:
            raise ValueError(f"ablation variant '{n}': expected 'all' or a comma-separated list of {', '.join(BY_NAME)}")
    want = set(asked)
    for n in asked:
        if BY_NAME[n].against != "main":
            want.add(BY_NAME[n].against)
    return [v for v in VARIANTS if v.name in want]


def overrides_of(variant: Variant) -> list[str]:
    """The -p overrides a variant's run starts with (on top of the preset and the main run's own overrides)."""
    out = list(variant.overrides) + list(VARIANT_COMMON)
    if any(o.startswith("02.") for o in variant.overrides):
        out.append(NO_TWINS)
    return out


def variant_run_id(base: str, variant: str) -> str:
    """The run folder of a variant of run `base`: runs/<base>.<variant>, beside it."""
    return f"{base}.{variant}"
