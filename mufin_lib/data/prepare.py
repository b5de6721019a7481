"""One entry point for stage 01: get a dataset in the XC layout from any source."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..paths import CACHE_DIR, atomic_write, process_alive, resolve
from .curate import CurateParams, curate_to_dir
from .images import ImageStore, build_img_bin, set_pixel_limit
from .polyvore import get_synthetic_outfits, read_polyvore, to_xc
from .synthetic import GENERATOR_VERSION, SIZES, SyntheticParams, generate
from .xc import XCDataset, read_xc

SOURCES = ("synthetic", "amazon-json", "xc-dir", "polyvore")


def synthetic_dir(p: SyntheticParams) -> Path:
    tag = ("" if p.with_images else "-noimg") + ("" if p.relation == "complementary" else f"-{p.relation}")
    return CACHE_DIR / "datasets" / f"synthetic-{p.n_products}-seed{p.seed}-v{GENERATOR_VERSION}{tag}"


def get_synthetic(size: str | int, seed: int = 0, with_images: bool = True, test_fraction: float = 0.3,
                  relation: str = "complementary") -> Path:
    """The synthetic catalogue, generated once into the cache (synthetic.json, written last, marks it complete)."""
    size = int(size) if str(size).isdigit() else size
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"synthetic size '{size}': expected one of {', '.join(SIZES)} or a number of products")
    p = SyntheticParams.for_size(size, seed=seed, with_images=with_images, test_fraction=test_fraction,
                                 relation=relation)
    out = synthetic_dir(p)
    if not (out / "synthetic.json").exists():
        # generated in a folder of this process's own, then renamed: a killed generation leaves only its .partial
        # folder (removed by the next one), and two runs generating at once never write into each other's files
        tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
        for stale in out.parent.glob(f"{out.name}.partial-*"):
            if not process_alive(stale.name.rsplit("-", 1)[1]):
                shutil.rmtree(stale, ignore_errors=True)
        generate(tmp, p)
        try:
            tmp.rename(out)
        except OSError:  # another run finished first: its catalogue is the same, bit for bit
            if not (out / "synthetic.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def prepare_dataset(params, stage: Path) -> tuple[XCDataset, dict]:
    """The dataset and a description of it (written to stage/dataset.json, which later stages read); `params` is
    stage 01's DatasetParams (mufin_lib.stages.dataset), read by its fields."""
    if params.source not in SOURCES:
        raise ValueError(f"source '{params.source}': expected one of {', '.join(SOURCES)}")
    report, label, outfits = None, None, None
    with_images = params.image_encoder != ""  # "": text only (no images are read)
    set_pixel_limit(params.max_image_pixels)
    if params.source == "synthetic":
        root = get_synthetic(params.size, params.seed, with_images, params.test_fraction, params.relation)
    elif params.source == "amazon-json":
        if not params.input_path:
            raise ValueError("source 'amazon-json' needs input_path= one or more metadata files (comma-separated)")
        files = [resolve(p.strip()) for p in params.input_path.split(",") if p.strip()]
        root = stage / "xc"
        # "Amazon Gift_Cards" from meta_Gift_Cards.json.gz: tables then say which real data they are on
        label = "Amazon " + "+".join(f.name.split(".")[0].removeprefix("meta_") for f in files)
        _, rep = curate_to_dir(files, root, CurateParams(params.test_fraction, params.seed, params.clean_titles,
                                                          text_from=params.text_from))
        report = rep.__dict__
        if with_images:  # local files are read, URLs downloaded (resumable; offline: counted, not fatal)
            build = build_img_bin(root)
            report["images"] = {k: build[k] for k in ("references", "local", "remote", "beyond_top_k", "outcomes",
                                                      "failures_by_reason", "failed", "written")}
    elif params.source == "polyvore":
        # input_path "": the kit's synthetic outfit set (generated once into the cache; size: smoke | default | N)
        src = resolve(params.input_path) if params.input_path else get_synthetic_outfits(params.size, params.seed)
        o = read_polyvore(src, params.split)
        root, items_root, rep = to_xc(o, stage, params.task, params.test_fraction, params.seed, params.text_from)
        syn = (o.root / "synthetic.json").exists()
        if syn:  # the XC root says so too: every table of the run is labelled synthetic
            with atomic_write(root / "synthetic.json") as f:
                json.dump({"outfits": json.loads((o.root / "synthetic.json").read_text())}, f)
        label = ("synthetic outfits" if syn else "Polyvore-layout outfits") + f" ({params.split})"
        outfits = {"input": str(src), "polyvore_root": str(o.root), "split": params.split, "task": params.task,
                   "items_root": str(items_root), "synthetic": syn, "splits": o.stats(), "read": o.report, "xc": rep}
    else:
        if not params.input_path:
            raise ValueError("source 'xc-dir' needs input_path= a directory in the XC layout (e.g. MM-AmazonTitles-300K)")
        root = resolve(params.input_path)
    ds = read_xc(root)
    store = ImageStore.from_dir(root)
    store.drop_unknown([u for split in ("label", "train", "test") for u in ds.uids[split]])
    store.validate()  # the statistics count what decodes, not what is listed
    n_img = np.array([store.count(u) for u in ds.uids["label"]])
    stats = ds.stats() | {"avg_images_per_product": round(float(n_img.mean()), 2),
                          "products_without_image": int((n_img == 0).sum()),
                          "products_without_title": int(sum(1 for t in ds.titles["label"] if not t))}
    synthetic = (root / "synthetic.json").exists()
    # root: the dataset in the XC layout that every later stage reads; input_path: what the user pointed at
    info = {"source": params.source, "root": str(root), "input_path": params.input_path, "synthetic": synthetic,
            "data_label": "synthetic" if synthetic else (params.name or label or root.name), "params": asdict(params),
            "stats": stats, "curation_report": report, "image_read_report": store.report.as_dict(), "outfits": outfits}
    with atomic_write(stage / "dataset.json") as f:
        json.dump(info, f, indent=2)
    return ds, info
