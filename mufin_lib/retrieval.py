"""Nearest-label search. This first version has exact (flat, inner product on unit vectors = cosine)
search; Module II adds HNSW and P-I-bag on top of the same interface."""
from __future__ import annotations

import numpy as np


def exact_search(queries: np.ndarray, keys: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k keys by inner product for each query: (scores, indices), both (n_queries x k)."""
    import faiss

    keys = np.ascontiguousarray(keys, dtype=np.float32)
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    k = min(k, keys.shape[0])
    S, I = [], []
    for s in range(0, len(queries), block):
        sc, ix = index.search(np.ascontiguousarray(queries[s:s + block], dtype=np.float32), k)
        S.append(sc); I.append(ix)
    return np.concatenate(S), np.concatenate(I)
