"""Module II (spec §5): nearest-label search over the label vectors of Module I.

- P-I-bag (the paper's default): every descriptor vector of every label (the rows of Z_l^1) plus the label
  vector z_l^1 are indexed; a label's score is the max over its vectors' similarities.
- P-I-vec (the authors' current code): z_l^1 alone.
Indexes: HNSW (faiss, inner product on unit vectors = cosine; M, efConstruction, efSearch as parameters)
or exact flat search, for small catalogues and for checking HNSW. faiss on the GPU when there is one.
An index is saved with the run and loaded again without rebuilding.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .paths import atomic_path, atomic_write


@dataclass
class IndexParams:
    """What a label index is built and searched with (stage 03 chooses them; saved with the index)."""
    mode: str = "bag"  # bag (P-I-bag, paper) | vec (P-I-vec, authors' code)
    index: str = "hnsw"  # hnsw | flat (exact)
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 300
    gpu: bool = True  # faiss GPU when available (flat search; HNSW stays on the CPU)

    @classmethod
    def from_fields(cls, values: dict) -> "IndexParams":
        """The index's fields of a larger record (a stage's parameters, or an index.json of an older run)."""
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def search_blocks(index, queries: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """A built faiss index's top-k for each query, in blocks of queries: (scores, indices), both (n_queries x k)."""
    k = min(k, index.ntotal)
    S, I = [], []
    for s in range(0, len(queries), block):
        sc, ix = index.search(np.ascontiguousarray(queries[s:s + block], dtype=np.float32), k)
        S.append(sc); I.append(ix)
    if not S:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(S), np.concatenate(I)


def exact_search(queries: np.ndarray, keys: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k keys by inner product for each query: (scores, indices), both (n_queries x k). Builds a flat index over
    the keys each call: for keys searched again and again, keep a VectorIndex."""
    return VectorIndex(keys).search(queries, k, block)


class VectorIndex:
    """Inner-product search over a fixed set of vectors, built once: exact (flat) or HNSW (approximate, efSearch at
    least the number of vectors asked). Saved and loaded with the model folder."""

    def __init__(self, keys: np.ndarray | None, kind: str = "flat", M: int = 32, ef_construction: int = 200,
                 ef_search: int = 64, gpu: bool = True):
        import faiss

        if kind not in ("flat", "hnsw"):
            raise ValueError(f"vote index '{kind}': expected flat or hnsw")
        self.kind, self.ef_search = kind, ef_search
        if keys is None:  # load() fills it
            return
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        t = time.perf_counter()
        if kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(keys.shape[1], M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
        else:  # exact search on a GPU where faiss has one (faiss's HNSW is CPU-only)
            self.index = _maybe_gpu(faiss.IndexFlatIP(keys.shape[1]), gpu)
        self.index.add(keys)
        self.build_seconds = time.perf_counter() - t

    def search(self, queries: np.ndarray, k: int, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        return search_blocks(self.index, queries, k, block)

    def save(self, path: str | Path) -> None:
        import faiss

        with atomic_path(Path(path)) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def load(cls, path: str | Path, kind: str, ef_search: int = 64) -> "VectorIndex":
        import faiss

        self = cls(None, kind, ef_search=ef_search)
        self.index = faiss.read_index(str(path))
        self.build_seconds = 0.0
        return self


VOTE_HNSW = {"M": 16, "ef_construction": 80, "ef_search": 64}  # the votes' HNSW: recall on real data in REPRODUCE.md


def vote_index(keys: np.ndarray, kind: str = "auto", val_queries: np.ndarray | None = None, neighbours: int = 20,
               above: int = 100_000, min_recall: float = 0.95) -> tuple[VectorIndex, dict]:
    """The index the training-point votes search, built once: "flat" (exact), "hnsw" (VOTE_HNSW), or "auto", the rule
    fixed before any test split is scored: exact up to `above` keys (there it costs a few ms per query); beyond, HNSW
    where its recall of the `neighbours` nearest keys against exact search, over the validation queries, is at least
    `min_recall`, else exact. Returns (index, record: the kind chosen, its validation recall, build seconds)."""
    if kind not in ("auto", "flat", "hnsw"):
        raise ValueError(f"vote_index '{kind}': expected auto, flat or hnsw")
    rec = {"vote_index_chosen": "flat", "vote_recall_val": None, "vote_index_rule": kind}
    if kind == "flat" or (kind == "auto" and len(keys) <= above):
        index = VectorIndex(keys)
    else:
        index = VectorIndex(keys, "hnsw", **VOTE_HNSW)
        if val_queries is not None and len(val_queries):
            k = min(neighbours, len(keys))
            recall = topk_overlap(index.search(val_queries, k)[1], VectorIndex(keys).search(val_queries, k)[1])
            rec["vote_recall_val"] = round(recall, 4)
            if kind == "auto" and recall < min_recall:
                index = VectorIndex(keys)
        rec["vote_index_chosen"] = index.kind
    rec["vote_index_build_s"] = round(index.build_seconds, 2)
    return index, rec


def index_bytes(index) -> int:
    """Memory of a faiss flat or HNSW-flat index: its float32 vectors, and the graph's links, levels and offsets."""
    h = getattr(index, "hnsw", None)
    graph = h.neighbors.size() * 4 + h.levels.size() * 4 + h.offsets.size() * 8 if h is not None else 0
    return int(index.ntotal * index.d * 4 + graph)


def _maybe_gpu(index, use: bool):
    import faiss
    if use and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


class LabelIndex:
    """ANN index over label vectors; `owner[j]` is the label of indexed vector j."""

    def __init__(self, vectors: np.ndarray, owner: np.ndarray, n_labels: int, params: IndexParams):
        import faiss

        self.params, self.n_labels = params, n_labels
        self.owner = np.asarray(owner, np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        t = time.perf_counter()
        if params.index == "hnsw":
            self.index = faiss.IndexHNSWFlat(vectors.shape[1], params.M, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = params.ef_construction
        elif params.index == "flat":
            self.index = _maybe_gpu(faiss.IndexFlatIP(vectors.shape[1]), params.gpu)
        else:
            raise ValueError(f"index '{params.index}': expected hnsw or flat")
        self.index.add(vectors)
        self.build_seconds = time.perf_counter() - t
        self.vectors_per_label = len(self.owner) / max(1, n_labels)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k LABELS per query (max over a label's vectors): (scores, labels), -1 where fewer were found."""
        # enough vectors to cover k distinct labels for most queries
        kv = int(min(self.index.ntotal, max(k, np.ceil(k * min(self.vectors_per_label, 4.0)))))
        if self.params.index == "hnsw":  # from the vectors asked of faiss: fewer would cut HNSW's candidate list
            self.index.hnsw.efSearch = max(self.params.ef_search, kv)
        S, I = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), kv)
        n = len(queries)
        out_s = np.full((n, k), -np.inf, np.float32)
        out_l = np.full((n, k), -1, np.int64)
        lab = np.where(I >= 0, self.owner[np.clip(I, 0, None)], -1)
        for i in range(n):
            seen, c = set(), 0
            for s, l in zip(S[i], lab[i]):  # results come sorted: the first hit of a label is its max
                if l < 0 or l in seen:
                    continue
                seen.add(l)
                out_s[i, c], out_l[i, c] = s, l
                c += 1
                if c == k:
                    break
        return out_s, out_l

    def save(self, folder: str | Path) -> None:
        import faiss

        folder = Path(folder)
        cpu = faiss.index_gpu_to_cpu(self.index) if hasattr(faiss, "index_gpu_to_cpu") and self.params.index == "flat" \
            and faiss.get_num_gpus() > 0 else self.index
        with atomic_path(folder / "index.faiss") as tmp:
            faiss.write_index(cpu, str(tmp))
        with atomic_path(folder / "owner.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.owner)
        with atomic_write(folder / "index.json") as f:
            json.dump({"params": asdict(self.params), "n_labels": self.n_labels, "n_vectors": int(len(self.owner)),
                       "build_seconds": self.build_seconds}, f, indent=2)

    @classmethod
    def load(cls, folder: str | Path) -> "LabelIndex":
        import faiss

        folder = Path(folder)
        if not (folder / "index.json").exists():
            raise FileNotFoundError(f"{folder}/index.json: missing (stage 03, module2, saves the index)")
        meta = json.loads((folder / "index.json").read_text())
        self = cls.__new__(cls)
        self.params = IndexParams.from_fields(meta["params"])
        self.n_labels = meta["n_labels"]
        self.owner = np.load(folder / "owner.npy")
        self.index = faiss.read_index(str(folder / "index.faiss"))
        if self.params.index == "flat":
            self.index = _maybe_gpu(self.index, self.params.gpu)
        self.build_seconds = meta["build_seconds"]
        self.vectors_per_label = len(self.owner) / max(1, self.n_labels)
        return self


def label_vectors(z1: np.ndarray, desc: np.ndarray | None, desc_owner: np.ndarray | None, mode: str):
    """(vectors, owner) to index: z_l^1 alone (vec) or z_l^1 plus every descriptor row (bag)."""
    L = len(z1)
    if mode == "vec":
        return z1, np.arange(L)
    if mode != "bag":
        raise ValueError(f"mode '{mode}': expected bag (P-I-bag) or vec (P-I-vec)")
    return np.vstack([z1, desc]), np.concatenate([np.arange(L), desc_owner])


def topk_overlap(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top-k labels (-1: empty slot) that the approximate search also found."""
    shares = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / len(b[b >= 0])
              for a, b in zip(approx, exact) if (b >= 0).any()]
    return float(np.mean(shares)) if shares else float("nan")


def save_shortlist(path: str | Path, scores: np.ndarray, labels: np.ndarray, uids: list[str]) -> None:
    """Module III: a split's shortlists (labels best first, with scores), cached on disk."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, scores=scores.astype(np.float32), labels=labels.astype(np.int64), uids=np.array(uids))


def load_shortlist(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (stage 04, module3, writes the shortlists)")
    z = np.load(path)
    return z["scores"], z["labels"], z["uids"].tolist()


def save_vote_neighbours(path: str | Path, S: np.ndarray, N: np.ndarray, uids: list[str]) -> None:
    """Stage 04: a split's vote neighbours (TrainVotes.neighbours_of), so that later stages need not search again."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, S=np.asarray(S, np.float32), N=np.asarray(N, np.int64), uids=np.array(uids))


def load_vote_neighbours(path: str | Path, uids: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The saved vote neighbours of `uids` (every one of them must be among the saved points, else None: search)."""
    path = Path(path)
    if not path.exists():
        return None
    z = np.load(path)
    pos = {u: i for i, u in enumerate(z["uids"].tolist())}
    if any(u not in pos for u in uids):
        return None
    rows = np.fromiter((pos[u] for u in uids), np.int64, len(uids))
    return z["S"][rows], z["N"][rows]


def save_fit_embeddings(path: str | Path, X: np.ndarray, uids: list[str], module1_sha: str) -> None:
    """Stage 04: the fit points' Module I embeddings, so that later stages' processes need not embed them again."""
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, X=np.asarray(X, np.float32), uids=np.array(uids), module1_sha=np.array(module1_sha))


def load_fit_embeddings(path: str | Path, uids: list[str], module1_sha: str) -> np.ndarray | None:
    """The saved fit embeddings where they are of these points, in this order, by this Module I (its model file's
    sha256); else None: the caller embeds them (a Module I trained again must not vote with the old one's vectors)."""
    path = Path(path)
    if not path.exists():
        return None
    z = np.load(path)
    if str(z["module1_sha"]) != module1_sha or z["uids"].tolist() != list(uids):
        return None
    return z["X"]


class TrainVotes:
    """The labels of a point's nearest training points (Module I's embedding, exact search), each label scored by the
    sum of the similarities of the neighbours that have it. A training point never votes for itself."""

    def __init__(self, keys: np.ndarray, Y_fit: sp.csr_matrix, neighbours: int = 20, index: VectorIndex | None = None):
        self.keys = np.ascontiguousarray(keys, np.float32)
        self.Y = sp.csr_matrix(Y_fit > 0, dtype=np.float32)
        self.neighbours = neighbours
        self.index = index or VectorIndex(self.keys)  # built once (exact unless given an HNSW one)

    def neighbours_of(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, fit rows) of each query's `neighbours` + 1 nearest keys (the one more stands in for a
        training point's own row): what `votes` sums, and what stage 04 saves for the later stages (`found`)."""
        return self.index.search(np.ascontiguousarray(queries, np.float32), min(self.neighbours + 1, len(self.keys)))

    def votes(self, queries: np.ndarray, exclude: np.ndarray | None = None, found=None) -> sp.csr_matrix:
        """n x labels: each label's votes (the summed similarities of the neighbours that have it); `exclude[i]` is
        query i's own row among the keys (-1: none). `found`: these queries' `neighbours_of`, searched before."""
        import hashlib

        queries = np.ascontiguousarray(queries, np.float32)
        key = hashlib.sha1(queries.tobytes() + (b"" if exclude is None else np.asarray(exclude, np.int64).tobytes())).digest()
        if getattr(self, "_last", (None,))[0] == key:  # the shortlist and the fusion ask for the same queries' votes
            return self._last[1]
        if found is not None and (len(found[0]) != len(queries) or found[0].shape[1] != min(self.neighbours + 1, len(self.keys))):
            raise ValueError(f"found neighbours of shape {found[0].shape}: expected ({len(queries)}, "
                             f"{min(self.neighbours + 1, len(self.keys))}) for these queries")
        S, N = self.neighbours_of(queries) if found is None else found
        S = np.maximum(S, 0) + 1e-6
        S[N < 0] = 0.0  # an approximate index may return fewer neighbours
        N = np.maximum(N, 0)
        if exclude is not None:
            S[N == np.asarray(exclude)[:, None]] = 0.0
        S[:, self.neighbours:] *= (S[:, :self.neighbours] == 0).any(1, keepdims=True)  # the extra one: only after a self
        V = _sum_neighbour_labels(S, N, self.Y)
        self._last = (key, V)
        return V

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, found=None,
               block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """(votes, labels), n x k, best first (ties: the smaller label), -1 where fewer labels got a vote. In blocks of
        queries: W x Y for a whole split (587K points, ~170 votes each) held gigabytes at once."""
        out_s, out_i = np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64)
        for s in range(0, len(queries), block):
            part = None if found is None else (found[0][s:s + block], found[1][s:s + block])
            V = self.votes(queries[s:s + block], None if exclude is None else exclude[s:s + block], part)
            row = np.repeat(np.arange(V.shape[0]), np.diff(V.indptr))
            order = np.lexsort((V.indices, -V.data, row))  # by row, then votes down, then label up
            rank = np.arange(len(order)) - V.indptr[row[order]]
            keep = order[rank < k]
            r, c = row[keep] + s, rank[rank < k]
            out_s[r, c], out_i[r, c] = V.data[keep], V.indices[keep]
        return out_s, out_i

    def pair_votes(self, queries: np.ndarray, shortlist: np.ndarray, block: int = 8192, found=None) -> np.ndarray:
        """Each shortlisted (query, label)'s votes divided by the number of voters (0..1; 0 where none or no label).
        `found`: the queries' `neighbours_of`, searched before (stage 04 saves them)."""
        out = np.zeros(shortlist.shape, np.float32)
        for s in range(0, len(shortlist), block):  # blocks of queries bound the (query, label) index arrays
            part = None if found is None else (found[0][s:s + block], found[1][s:s + block])
            V, sl = self.votes(queries[s:s + block], found=part), shortlist[s:s + block]
            rows = np.repeat(np.arange(len(sl)), sl.shape[1])
            got = np.asarray(V[rows, np.maximum(sl, 0).ravel()]).ravel().reshape(sl.shape)
            out[s:s + block] = np.where(sl >= 0, got / self.neighbours, 0.0)
        return out


def _sum_neighbour_labels(S: np.ndarray, N: np.ndarray, Y: sp.csr_matrix) -> sp.csr_matrix:
    """W x Y for W (n x fit points) holding similarities S at rows N, in time and memory that grow with the votes
    gathered, not with the labels: scipy's sparse product allocates a mask as wide as Y per call (0.24 ms of a single
    query at 1M labels). The same float32 sums as the product, added in the same order (neighbour by neighbour);
    labels whose votes sum to 0 are left out, as the product leaves them."""
    n, L = S.shape[0], Y.shape[1]
    nbr, w = N.ravel(), S.ravel()
    start = Y.indptr[nbr]
    cnt = Y.indptr[nbr + 1] - start
    total = int(cnt.sum())
    at = np.repeat(start - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt) + np.arange(total)  # Y's entries in turn
    lab = Y.indices[at].astype(np.int64)
    key = np.repeat(np.repeat(np.arange(n, dtype=np.int64) * L, S.shape[1]), cnt) + lab  # (query, label) as one int
    uniq, inv = np.unique(key, return_inverse=True)
    sums = np.zeros(len(uniq), np.float32)
    np.add.at(sums, inv, np.repeat(w, cnt).astype(np.float32) * Y.data[at])  # unbuffered: in the order given
    keep = sums != 0
    uniq, sums = uniq[keep], sums[keep]
    indptr = np.searchsorted(uniq // L, np.arange(n + 1))
    return sp.csr_matrix((sums, (uniq % L).astype(np.int32), indptr), shape=(n, L))


class LabelCentroids:
    """Label centroids: the normalised mean Module I embedding of each label's training points (labels with
    none are never returned), searched exactly by inner product. A training point's own shortlist is not cleared of
    its own contribution (the votes are): its positives are a little easier to find in training than in test."""

    def __init__(self, keys: np.ndarray, Y_fit: sp.csr_matrix):
        Y = sp.csr_matrix(Y_fit > 0, dtype=np.float32).T.tocsr()  # labels x points
        C = np.asarray(Y @ np.asarray(keys, np.float32))
        self.labels = np.flatnonzero(Y.getnnz(1) > 0)
        C = C[self.labels]
        self.centroids = np.ascontiguousarray(C / (np.linalg.norm(C, axis=1, keepdims=True) + 1e-12), np.float32)

    def search(self, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        S, I = exact_search(queries, self.centroids, min(k, len(self.labels)))
        I = np.where(I >= 0, self.labels[np.maximum(I, 0)], -1)
        if I.shape[1] < k:
            pad = k - I.shape[1]
            S, I = np.pad(S, ((0, 0), (0, pad)), constant_values=-np.inf), np.pad(I, ((0, 0), (0, pad)), constant_values=-1)
        return S, I


def merge_shortlists(first: np.ndarray, second: np.ndarray, size: int, second_max: int) -> np.ndarray:
    """Per row, labels from `first` and `second` (best first, -1 empty) interleaved without repeats: up to
    `second_max` from `second`, the rest from `first`, `size` in all."""
    out = np.full((len(first), size), -1, np.int64)
    for r in range(len(first)):
        a = [int(x) for x in first[r] if x >= 0]
        b = [int(x) for x in second[r] if x >= 0]
        seen, row, ia, ib, nb = set(), [], 0, 0, 0
        while len(row) < size and (ia < len(a) or ib < len(b)):
            take_b = ib < len(b) and nb < second_max and (len(row) % 2 == 1 or ia >= len(a))
            if take_b:
                x = b[ib]; ib += 1
                if x not in seen:
                    nb += 1
            elif ia < len(a):
                x = a[ia]; ia += 1
            else:
                break
            if x not in seen:
                seen.add(x); row.append(x)
        out[r, :len(row)] = row
    return out


def shortlist_points(index: LabelIndex, x1: np.ndarray, size: int, second=None, second_share: float = 0.5,
                     exclude: np.ndarray | None = None, found=None) -> tuple[np.ndarray, np.ndarray]:
    """Module III for points embedded by Module I (x1): (scores, labels) of their shortlists of `size` labels from
    the index and, with a `second` source (TrainVotes or LabelCentroids: anything with .search(x1, k, exclude)), up
    to `second_share` of each shortlist from it, interleaved. Scores are the order (best highest): the ranker and
    the fusion score every shortlisted label themselves."""
    S, I = index.search(x1, size)
    if second is None:
        return S, I
    _, V = second.search(x1, size, exclude) if found is None else second.search(x1, size, exclude, found)
    I = merge_shortlists(I, V, size, int(round(size * second_share)))
    return np.where(I >= 0, size - np.arange(size)[None, :], -np.inf).astype(np.float32), I
