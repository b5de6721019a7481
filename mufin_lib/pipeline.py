"""A trained MUFIN's pipeline in words: where its Modules I-IV differ from the paper's (MUFIN_SPEC.md; the authors'
code where the paper is silent), so that every fused row names the pipeline that computed it, and the paper's own
figures stand only beside a row computed with the paper's pipeline. Plain dicts in, words out: nothing here knows
runs or stages (Run.pipeline reads the saved parameters)."""
from __future__ import annotations

# (module, parameter) -> the paper's value, and how the kit's other values read in a row's name
PAPER = {
    ("module1", "loss"): "triplet",
    ("module1", "positives"): "hardest",
    ("module1", "negatives"): "hardest",
    ("module1", "self_attention"): True,
    ("module1", "select_epoch"): False,  # the paper keeps the last epoch
    ("module2", "mode"): "bag",
    ("module3", "augment"): "none",
    ("module4", "loss"): "cosine_embedding",
    ("module4", "combiner"): "cross_attention",
    ("module4", "negative_sampling"): "rank",
    ("module4", "max_csim"): 1.0,
    ("module4", "frozen_epochs"): 0,
    ("module4", "select_epoch"): False,
}
WORDS = {
    ("module1", "loss"): {"infonce": "InfoNCE"},
    ("module1", "positives"): {"random": "random +ve"},
    ("module1", "negatives"): {"random": "random -ve"},
    ("module1", "self_attention"): {False: "no A_S"},
    ("module1", "select_epoch"): {True: "Module I's best epoch"},
    ("module2", "mode"): {"vec": "P-I-vec"},
    ("module3", "augment"): {"votes": "votes in the shortlist", "centroid": "centroids in the shortlist"},
    ("module4", "loss"): {"softmax": "listwise ranker loss"},
    ("module4", "combiner"): {"concat": "ConCat", "none": "no A_C"},
    ("module4", "negative_sampling"): {"top": "fixed top negatives"},
    ("module4", "select_epoch"): {True: "Module IV's best epoch"},
}
PAPER_MODULES = "the paper's Modules I-IV"


def differences(saved: dict[str, dict]) -> list[str]:
    """The kit's choices that differ from the paper's, in words, from each module's saved parameters
    (`{"module1": {...}, "module2": {...}, ...}`; a parameter a run did not record counts as the paper's)."""
    out = []
    for (module, name), paper in PAPER.items():
        value = saved.get(module, {}).get(name, paper)
        if value == paper:
            continue
        if name == "max_csim":
            out.append(f"no negatives within cosine {value:g} of a positive")
        elif name == "frozen_epochs":
            out.append(f"{value} frozen-feature epochs")
        else:
            out.append(WORDS[(module, name)].get(value, f"{module} {name}={value}"))
    return out


def modules_name(diffs: list[str]) -> str:
    """What a row's name says of the pipeline: the paper's Modules I-IV, or the kit's and how they differ."""
    return PAPER_MODULES if not diffs else "kit Modules I-IV: " + ", ".join(diffs)
