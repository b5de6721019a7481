"""Baselines run beside MUFIN. First: exact nearest-neighbour retrieval with the frozen pretrained
encoders (text only, image only, text+image), the floor every trained model must beat."""
from __future__ import annotations

import numpy as np

from .data.xc import XCDataset
from .encoders import Embeddings
from .metrics import evaluate, inv_propensity, topk_to_csr
from .retrieval import exact_search

MODALITIES = ("text", "image", "text+image")


def frozen_vectors(emb: Embeddings, uids: list[str], modality: str) -> np.ndarray:
    """One vector per product. text+image concatenates the unit title and unit mean-image vectors, so the
    inner product is the sum of the two cosines (a missing modality adds nothing)."""
    row = emb.row()
    idx = np.array([row[u] for u in uids])
    if modality == "text":
        return np.asarray(emb.text)[idx]
    if modality == "image":
        return emb.image_mean()[idx]
    if modality == "text+image":
        return np.hstack([np.asarray(emb.text)[idx], emb.image_mean()[idx]])
    raise ValueError(f"modality '{modality}': expected one of {MODALITIES}")


def frozen_nn(ds: XCDataset, emb: Embeddings, split: str = "test", modality: str = "text+image",
              k: int = 5, A: float = 0.6, B: float = 2.6) -> dict:
    Q = frozen_vectors(emb, ds.uids[split], modality)
    X = frozen_vectors(emb, ds.uids["label"], modality)
    extra = int(np.bincount(ds.filters[split][:, 0]).max()) if len(ds.filters[split]) else 0
    S, I = exact_search(Q, X, k + extra)  # room for the filtered (self, reciprocal) labels
    scores = topk_to_csr(I, S, ds.num_labels)
    m = evaluate(scores, ds.Y[split], inv_propensity(ds.Y["train"], A, B), ds.filters[split])
    return {"modality": modality, "split": split, **m}


def frozen_table(ds: XCDataset, emb: Embeddings, split: str = "test", modalities=MODALITIES):
    """frozen_nn for each modality, one row each (a pandas DataFrame with the dataset's name)."""
    import pandas as pd

    return pd.DataFrame([frozen_nn(ds, emb, split, m) for m in modalities])
