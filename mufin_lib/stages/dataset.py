"""Stage 01, dataset: a dataset in the Extreme Classification Repository layout from any source (the synthetic
catalogue, Amazon metadata, an XC release), its curation report, statistics, the synthetic catalogue's oracles and
the frozen encoders' floor."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from ..baselines import frozen_table
from ..config import choice, ranged, valid
from ..data.prepare import prepare_dataset
from ..data.xc import XCDataset
from ..data.manifest import propensity_of
from ..layout import METRICS, PROPENSITY_OTHER
from ..paths import MANIFEST_DIR
from ..report import curation_table, dataset_stats_table, write_metrics, write_table


@dataclass
class DatasetParams:
    """Stage 01's parameters (notebook 01's parameters cell equals these defaults)."""
    source: str = choice("synthetic", "amazon-json", "xc-dir", "polyvore")  # synthetic | amazon-json | xc-dir | polyvore
    # amazon-json: metadata file(s), comma-separated; xc-dir: the dataset directory; polyvore: the folder holding
    # polyvore_outfits/ ("": the kit's synthetic outfit set of `size`)
    input_path: str = ""
    size: str = valid("smoke", lambda v: v in ("smoke", "default") or (v.isdigit() and int(v) >= 30),
                      "smoke, default or a number of products of 30 or more")  # synthetic: smoke (~2K) | default (~20K) | N
    relation: str = choice("complementary", "collections")  # synthetic also_buy: complementary (v3) | collections (v2)
    split: str = choice("disjoint", "nondisjoint")  # polyvore: which split folder
    # polyvore: outfits = the chain learns from the train outfits, stage 14 completes valid/test outfits; xc = every
    # outfit's items as points and labels (labels span all items), a point split, the standard chain
    task: str = choice("outfits", "xc")
    seed: int = ranged(0, 0)  # numpy and torch seeds: 0 or more
    test_fraction: float = ranged(0.3, 0, 1, lo_open=True, hi_open=True)
    clean_titles: bool = True  # HTML entities and markup out of titles
    text_from: str = choice("title", "title+category", "title+description")  # amazon-json: the paper uses titles
    frozen_check: bool = True  # stage 01 also reports P@k of the frozen pretrained encoders, per modality
    text_encoder: str = "all-MiniLM-L6-v2"  # the encoders whose outputs stage 01 caches
    image_encoder: str = "efficientnet-lite0"  # "": text only (no images are read)
    name: str = ""  # how tables name the data ("": from the source, e.g. "Amazon Gift_Cards")
    max_image_pixels: int = ranged(178_956_970, 1)  # more pixels: one counted image problem (Pillow's bomb limit)
    # the data_manifest entry this data is: PSP's A, B come from it. "": from the source (synthetic: synthetic-<size>;
    # amazon-json: amazon2018-samples, Amazon data; xc-dir: none, pyxclib's 0.55 / 1.5 for other data)
    manifest: str = ""


def propensity(params: DatasetParams) -> dict:
    """PSP's A, B for this data and where they come from: the manifest named, or the one the source implies."""
    name = params.manifest or {"synthetic": f"synthetic-{params.size}", "amazon-json": "amazon2018-samples"}.get(
        params.source, "")
    if name and (params.manifest or (MANIFEST_DIR / f"{name}.yaml").exists()):
        A, B = propensity_of(name)
        return {"A": A, "B": B, "from": f"data_manifest/{name}.yaml"}
    A, B = PROPENSITY_OTHER
    return {"A": A, "B": B, "from": "pyxclib's setting for data other than Amazon (no manifest named)"}


@dataclass
class DatasetResult:
    dataset: XCDataset
    info: dict  # dataset.json
    curation: pd.DataFrame | None  # every input record kept or dropped with its reason (real data)
    stats: pd.DataFrame  # the paper's Table 1 columns
    oracle: pd.DataFrame | None  # synthetic catalogue: test P@k of the generator's true probabilities
    synthetic_facts: dict  # synthetic catalogue: the oracle's notes and the also_buy relation's facts
    frozen: pd.DataFrame | None  # frozen encoders, exact nearest labels, test split, per modality
    summary: dict  # metrics.json


def stage(run, params: DatasetParams) -> DatasetResult:
    """Prepare the dataset (dataset/dataset.json names its root) and write its tables and metrics.json."""
    out = run.stage("dataset")
    ds, info = prepare_dataset(params, out)
    curation = None
    if info["curation_report"]:
        curation = curation_table(info["curation_report"])
        write_table(curation, out, "curation_report_table")
    if info.get("outfits"):  # the outfit set's splits as the reader found them (README's table)
        write_table(pd.DataFrame(info["outfits"]["splits"]), out, "outfit_splits", caption=run.data_title)
    stats = dataset_stats_table(info)
    write_table(stats, out, "dataset_stats", caption=run.data_title)
    syn = json.loads((ds.root / "synthetic.json").read_text()) if run.synthetic else {}
    oracle = None
    if "oracle" in syn:
        oracle = pd.DataFrame(syn["oracle"]["table"])
        write_table(oracle, out, "synthetic_oracle", caption="Oracles on the SYNTHETIC catalogue's test split")
    prop = propensity(params)
    summary = {"data": run.data_title, "synthetic": run.synthetic, "stats": info["stats"], "propensity": prop}
    frozen = None
    if params.frozen_check:
        frozen = frozen_table(ds, run.embeddings_for(params.text_encoder, params.image_encoder), "test",
                              ["text", "image", "text+image"] if params.image_encoder else ["text"], prop["A"], prop["B"])
        frozen.insert(0, "data", run.data_name)
        write_table(frozen, out, "frozen_encoders", caption=f"Frozen encoders, exact NN, test split ({run.data_title})")
        summary["frozen_encoders"] = frozen.to_dict("records")
    if "oracle" in syn:
        summary["synthetic_oracle"] = syn["oracle"]
    write_metrics(out, summary, METRICS)
    facts = {"oracle": {k: v for k, v in syn.get("oracle", {}).items() if k != "table"},
             "relation_facts": syn.get("relation_facts", {})}
    return DatasetResult(ds, info, curation, stats, oracle, facts, frozen, summary)
