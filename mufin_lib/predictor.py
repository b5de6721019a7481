"""A trained MUFIN as one folder that predicts alone (as PECOS's `Model.load(folder)`):

    p = Predictor.load("model/")            # or `mufin predict --model model/ --input new.jsonl`
    p.recommend(products, top_k=10)

The folder (written by `Predictor.save`; `mufin export runs/<id> DIR` makes one from a run):

    predictor.json          format, the encoders' identity (Module I's inputs), label count, where it came from
    module1/model.pt        Module I (bottlenecks, A_S, vectoriser) with its training parameters
    module4/model.pt        Module IV (A_C and the one-vs-all classifiers) with its training parameters
    index/                  Module II's label index (faiss) over the labels' vectors
    labels.npz              the labels' bags of pre-embeddings (the label side of Modules I and IV) and titles
    voters.npz              the fit points' Module I embeddings and labels: Module III's votes and centroids
    votes.faiss             the HNSW index the votes search, where stage 04 chose one (shortlist.json says)
    shortlist.json          ShortlistParams: how Module III makes shortlists
    fusion.json             FusionParams: what the score fuses, with which weights

Nothing is re-embedded at load and nothing else is read: no run folder, no dataset, no cache. New products are
encoded by the encoders named in predictor.json (their weights come from their packages). Nothing here knows runs
or stages.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .bags import BagTable, embed_rows
from .data.amazon import Product
from .encoders import encode_images, encode_texts, load_image_encoder, load_text_encoder
from .fusion import FusionParams, fuse, label_side, label_side_dtype, log_popularity, pair_terms, score_pairs
from .module1 import load_model
from .paths import atomic_path, atomic_write
from .ranker import load_ranker
from .layout import VOTE_INDEX
from .retrieval import VOTE_HNSW, LabelCentroids, LabelIndex, TrainVotes, VectorIndex, shortlist_points

FORMAT = 1


@dataclass(frozen=True)
class ShortlistParams:
    """How Module III makes a shortlist: `size` labels from the index and, with `augment` ("votes": training-point
    votes; "centroid": label centroids), up to `share` of them from that second source."""
    size: int = 100
    augment: str = "none"
    vote_neighbours: int = 20
    share: float = 0.5
    vote_index: str = "flat"  # the index the votes search, as stage 04 chose it: flat (exact) or hnsw (votes.faiss)

    @classmethod
    def from_stage(cls, rec: dict) -> "ShortlistParams":
        """From stage 04's parameters (module3/shortlist.json; older runs named votes "knn" and their neighbours
        `augment_neighbours`)."""
        if not rec:
            return cls()
        augment = {"knn": "votes"}.get(rec.get("augment", "none"), rec.get("augment", "none"))
        return cls(int(rec.get("shortlist", 100)), augment,
                   int(rec.get("vote_neighbours", rec.get("augment_neighbours", 20))), float(rec.get("augment_share", 0.5)),
                   rec.get("vote_index_chosen", "flat"))


@dataclass(frozen=True)
class Encoders:
    """The encoders' identity and what Module I reads of a product."""
    text_encoder: str
    image_encoder: str
    modalities: str
    keep_top_k: int

    @classmethod
    def of(cls, module1_params: dict) -> "Encoders":
        if not module1_params["freeze_encoders"]:
            raise ValueError("Module I fine-tuned its encoders: a model folder carries frozen encoders' models only "
                             "(the fine-tuned towers would have to be saved with it; not supported yet)")
        return cls(module1_params["text_encoder"], module1_params["image_encoder"], module1_params["modalities"],
                   int(module1_params["keep_top_k"]))


class Predictor:
    """Module I, the label index, Module III's second source, Module IV and the fusion weights, ready to recommend."""

    def __init__(self, module1, module1_params: dict, ranker, ranker_params: dict, index: LabelIndex, labels: BagTable,
                 label_titles: list[str], fit_embeddings: np.ndarray, fit_labels: sp.csr_matrix, fusion: FusionParams,
                 shortlist: ShortlistParams, origin: dict | None = None, vote_index: VectorIndex | None = None):
        self.module1, self.module1_params = module1.eval(), module1_params
        self.ranker, self.ranker_params = ranker.eval(), ranker_params
        self.index, self.labels, self.label_titles = index, labels, list(label_titles)
        self.fit_embeddings, self.fit_labels = np.asarray(fit_embeddings, np.float32), sp.csr_matrix(fit_labels)
        self.fusion, self.shortlist, self.origin = fusion, shortlist, origin or {}
        self.encoders = Encoders.of(module1_params)
        self.n_labels = len(self.labels.uids)
        self.alpha = fusion.label_alpha(self.fit_labels)
        self.popularity = log_popularity(self.fit_labels)
        # the votes' index, built once (or the run's / the folder's HNSW): the shortlist and the fusion search it
        self.vote_index = vote_index or (VectorIndex(self.fit_embeddings, "hnsw", **VOTE_HNSW) if shortlist.vote_index == "hnsw"
                                         else VectorIndex(self.fit_embeddings))
        self.voters = TrainVotes(self.fit_embeddings, self.fit_labels, fusion.vote_neighbours, self.vote_index)
        if shortlist.augment == "votes":  # one set of voters when the shortlist and the fusion ask the same
            self.second = (self.voters if shortlist.vote_neighbours == fusion.vote_neighbours
                           else TrainVotes(self.fit_embeddings, self.fit_labels, shortlist.vote_neighbours, self.vote_index))
        elif shortlist.augment == "centroid":
            self.second = LabelCentroids(self.fit_embeddings, self.fit_labels)
        else:
            self.second = None
        # label-side work that does not depend on the query, done once: Module I's z^1 of every label
        self.label_rows = np.arange(self.n_labels)  # label id = its row; made once: 0.4 ms a query at 1M labels
        self.label_z1 = embed_rows(self.module1, self.labels, self.label_rows)
        self.with_ranker = not np.all(np.asarray(self.alpha) == 1.0)  # alpha 1 everywhere: Module IV has no weight
        # and Module IV's label side of every label, where it fits in LABEL_SIDE_BYTES
        self.label_side = None
        dtype = label_side_dtype(self.ranker, self.labels.counts) if self.with_ranker else None
        if dtype is not None:
            self.label_side = label_side(self.ranker, self.labels, self.label_rows, dtype=dtype)
        e = self.encoders
        self.text_model = load_text_encoder(e.text_encoder)
        self.image_enc = load_image_encoder(e.image_encoder) if e.image_encoder and e.modalities != "text" else None

    # ---- the folder ----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the model folder (each file atomically; predictor.json last, so a folder with it is complete)."""
        folder = Path(folder)
        for sub, net, params in (("module1", self.module1, self.module1_params), ("module4", self.ranker, self.ranker_params)):
            record = {"model": net.state_dict(), "params": params}
            if sub == "module1":
                record["model_params"] = asdict(net.p)
            with atomic_path(folder / sub / "model.pt") as tmp:
                torch.save(record, tmp)
        self.index.save(folder / "index")
        self.labels.save(folder / "labels.npz")
        Y = self.fit_labels
        with atomic_path(folder / "voters.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, embeddings=self.fit_embeddings, data=Y.data, indices=Y.indices, indptr=Y.indptr,
                         shape=np.array(Y.shape))
        with atomic_write(folder / "label_titles.json") as f:
            json.dump(self.label_titles, f)
        with atomic_write(folder / "shortlist.json") as f:
            json.dump(asdict(self.shortlist), f, indent=2)
        if self.vote_index.kind == "hnsw":
            self.vote_index.save(folder / VOTE_INDEX)
        self.fusion.save(folder)
        with atomic_write(folder / "predictor.json") as f:
            json.dump({"format": FORMAT, "encoders": asdict(self.encoders), "labels": self.n_labels,
                       "origin": self.origin}, f, indent=2)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Predictor":
        folder = Path(folder)
        meta_f = folder / "predictor.json"
        if not meta_f.exists():
            raise FileNotFoundError(f"{meta_f}: missing; {folder} is not a complete model folder "
                                    "(write one with: mufin export runs/<id> DIR)")
        meta = json.loads(meta_f.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_f}: model folder format {meta.get('format')!r}; this kit reads format {FORMAT}")
        labels = BagTable.load(folder / "labels.npz")
        module1 = load_model(folder / "module1")
        module1_params = torch.load(folder / "module1" / "model.pt", map_location="cpu", weights_only=False)["params"]
        ranker_params = torch.load(folder / "module4" / "model.pt", map_location="cpu", weights_only=False)["params"]
        v = np.load(folder / "voters.npz")
        fit_labels = sp.csr_matrix((v["data"], v["indices"], v["indptr"]), shape=tuple(v["shape"]))
        shortlist = ShortlistParams(**json.loads((folder / "shortlist.json").read_text()))
        votes = folder / VOTE_INDEX
        if shortlist.vote_index == "hnsw" and not votes.exists():
            raise FileNotFoundError(f"{votes}: missing; shortlist.json says the votes search an HNSW index saved there "
                                    f"(write the folder again with: mufin export runs/<id> DIR)")
        return cls(module1, module1_params, load_ranker(folder / "module4", module1, len(labels.uids)), ranker_params,
                   LabelIndex.load(folder / "index"), labels, json.loads((folder / "label_titles.json").read_text()),
                   v["embeddings"], fit_labels, FusionParams.load(folder),
                   shortlist, meta.get("origin"),
                   VectorIndex.load(votes, "hnsw", VOTE_HNSW["ef_search"]) if shortlist.vote_index == "hnsw" else None)

    # ---- prediction ----------------------------------------------------------------------------------
    def inputs(self, products: list[Product]):
        """The model inputs of new products (the layout of the labels' bags): title row + up to k image rows."""
        e = self.encoders
        text = torch.from_numpy(encode_texts(self.text_model, [p.title if e.modalities != "image" else "" for p in products]))
        has_text = text.abs().sum(1) > 0
        ims = [p.images[:e.keep_top_k] if self.image_enc is not None else [] for p in products]
        dim = self.labels.image_dim
        w = max((len(x) for x in ims), default=0)
        flat = encode_images(self.image_enc, (im for x in ims for im in x), desc="encode") if w else np.zeros((0, dim), np.float32)
        images, mask = torch.zeros(len(products), w, dim), torch.zeros(len(products), w, dtype=torch.bool)
        o = 0
        for i, x in enumerate(ims):
            images[i, :len(x)] = torch.from_numpy(flat[o:o + len(x)])
            mask[i, :len(x)] = True
            o += len(x)
        has_text[~has_text & ~mask.any(1)] = True  # a bag must hold one descriptor: the zero title
        return text, has_text, images, mask

    @torch.no_grad()
    def recommend(self, products: list[Product], top_k: int = 10, shortlist: int | None = None,
                  timings: dict | None = None) -> list[list[tuple[str, str, float]]]:
        """Per product, its top_k labels as (label uid, title, fused score); `timings` receives ms per product of
        encode (raw title and images through the encoders and Module I) / retrieve (Module II-III) / rank (IV).
        One product runs on one thread (the small operations of a single query lose time to splitting them across
        cores); a batch on every core."""
        with _threads(1 if len(products) == 1 else None):
            return self._recommend(products, top_k, shortlist, timings)

    def _recommend(self, products, top_k, shortlist, timings):
        size = max(shortlist or self.shortlist.size, top_k)
        t0 = time.perf_counter()
        inputs = self.inputs(products)
        x1 = self.module1(*inputs)[0].numpy()
        t1 = time.perf_counter()
        _, sl = shortlist_points(self.index, x1, size, self.second, self.shortlist.share)
        t2 = time.perf_counter()
        e, r = score_pairs(self.ranker, inputs, self.labels, self.label_rows, sl, self.module1, self.label_z1,
                           self.with_ranker, self.label_side, point_x1=x1)
        extra = self.fusion.extra(*pair_terms(self.voters, self.popularity, x1, sl)) if self.fusion.added_terms else 0.0
        scores = fuse(e, r, sl, self.alpha, self.n_labels, extra)
        t3 = time.perf_counter()
        if timings is not None:
            n = max(1, len(products))
            timings.update(encode_ms=1000 * (t1 - t0) / n, retrieve_ms=1000 * (t2 - t1) / n, rank_ms=1000 * (t3 - t2) / n)
        out = []
        for i in range(len(products)):
            s, e_ = scores.indptr[i], scores.indptr[i + 1]
            order = np.argsort(-scores.data[s:e_])[:top_k]
            labs = scores.indices[s:e_][order]
            out.append([(self.labels.uids[l], self.label_titles[l], round(float(scores.data[s:e_][o] - 10.0), 5))
                        for l, o in zip(labs, order)])
        return out


class _threads:
    """torch's and faiss's thread counts set to n for a block (None: left as they are), then put back."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        import faiss

        self.before = (torch.get_num_threads(), faiss.omp_get_max_threads())
        if self.n:
            torch.set_num_threads(self.n)
            faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc):
        import faiss

        torch.set_num_threads(self.before[0])
        faiss.omp_set_num_threads(self.before[1])


def time_recommend(predictor: Predictor, products: list[Product], shortlist: int | None = None,
                   one_by_one: int = 20) -> dict:
    """ms per product of encode / retrieve / rank, for products in one batch; and under "one_product", the means
    over the first `one_by_one` products asked for one at a time (each on one thread, as `mufin predict` does)."""
    t = {}
    predictor.recommend(products, shortlist=shortlist, timings=t)
    t = {k: round(v, 3) for k, v in t.items()}
    singles = []
    for p in products[:one_by_one]:
        s = {}
        predictor.recommend([p], shortlist=shortlist, timings=s)
        singles.append(s)
    if singles:
        t["one_product"] = {k: round(float(np.mean([s[k] for s in singles])), 3) for k in singles[0]} | {"products": len(singles)}
    t.update(points=len(products), shortlist=shortlist or predictor.shortlist.size,
             images_per_point=round(float(np.mean([len(p.images) for p in products])), 2) if products else 0.0,
             device="cuda" if torch.cuda.is_available() else "cpu", threads=torch.get_num_threads())
    return t
