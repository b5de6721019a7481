"""Regenerate the checksummed manifests of the synthetic catalogues and the real Amazon samples.
Run after changing the generator (and bump GENERATOR_VERSION): python tools/update_manifest.py"""
from dataclasses import asdict

from mufin_lib.data.manifest import describe_files, load_manifest
from mufin_lib.data.manifest import write_manifest as _write


def write_manifest(name: str, m: dict):
    """Write, keeping what the tool does not compute (PSP's A, B: `propensity`) from the manifest as it stands."""
    kept = load_manifest(name).get("propensity")
    return _write(name, {**m, "propensity": kept} if kept else m)
from mufin_lib.data.prepare import get_synthetic
from mufin_lib.data.synthetic import GENERATOR_VERSION, SyntheticParams
from mufin_lib.paths import AMAZON2018_DIR, HM_DIR

for size in ("smoke", "default"):
    p = SyntheticParams.for_size(size)
    root = get_synthetic(size, p.seed)
    write_manifest(f"synthetic-{size}", {
        "name": f"synthetic-{size}",
        "description": f"The kit's embedded default data: synthetic multimodal catalogue, {size} size "
                       f"({p.n_products} products). SYNTHETIC: results on it are labelled so.",
        "synthetic": True,
        "obtain": f"Generated, deterministic: mufin run --only 01 -p size={size} (or mufin data verify synthetic-{size}, "
                  "which generates it into cache/ and checks every file bit for bit).",
        "location": "cache:synthetic",
        "generator": {**asdict(p), "generator_version": GENERATOR_VERSION},
        "files": describe_files(root),
    })

write_manifest("amazon2018-samples", {
    "name": "amazon2018-samples",
    "description": "Real Amazon Review Data (2018) product metadata samples (text, also_buy; image URLs unreachable "
                   "offline): a small real, text-only benchmark and the curation tests' fixtures.",
    "synthetic": False,
    "obtain": "Shipped beside the project in ../shared/data/amazon2018 (see its README). The full per-category files "
              "come from the Amazon Review Data (2018) release (Ni, Li and McAuley, EMNLP 2019).",
    "location": "shared:data/amazon2018",
    "files": [f for f in describe_files(AMAZON2018_DIR) if f["path"].endswith(".json.gz")],
})
write_manifest("hm", {
    "name": "hm",
    "description": "Real multimodal co-purchase data: 11,800 H&M articles with title, photo and the articles most often "
                   "bought by the same customers (61,186 pairs), in the Amazon 2018 metadata schema (presets hm, "
                   "hm-text, hm-image).",
    "synthetic": False,
    "obtain": "Shipped beside the project in ../shared/data/hm (its README says what and how many). Origin: a public "
              "sample of the H&M Personalized Fashion Recommendations competition data (H&M Group, 2022; Kaggle, "
              "competition terms: research and non-commercial use) as kept in github hungle45/PSE-Recommendor-System "
              "(commit a8979e10). The 11,800 photos under images/ are checked by the curation (every one read or "
              "counted as a skip with its reason), not listed here one by one.",
    "location": "shared:data/hm",
    "files": [f for f in describe_files(HM_DIR) if "/" not in f["path"]],
})
print("manifests written")
