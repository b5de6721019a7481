"""Run by another Python (one with libpecos, which needs numpy < 2): `python pecos_runner.py DIR K [THREADS]`.
Reads DIR/Xtr.npz, Ytr.npz, Xte.npz; trains XR-Linear with PECOS's defaults; writes DIR/P.npz (top K scores per
test row) and DIR/times.json. THREADS: prediction's threads (default -1: all, PECOS's default). It imports nothing from the kit, so the kit's environment need not hold pecos."""
import json
import sys
import time
from pathlib import Path

import scipy.sparse as sp
from pecos.xmc import Indexer, LabelEmbeddingFactory
from pecos.xmc.xlinear.model import XLinearModel

d, k = Path(sys.argv[1]), int(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else -1
Xtr, Ytr, Xte = (sp.load_npz(d / f).tocsr() for f in ("Xtr.npz", "Ytr.npz", "Xte.npz"))
t = time.perf_counter()
feat = LabelEmbeddingFactory.create(Ytr, Xtr, method="pifa")
cluster_chain = Indexer.gen(feat, seed=0)
model = XLinearModel.train(Xtr, Ytr, C=cluster_chain)
train_s = time.perf_counter() - t
t = time.perf_counter()
P = model.predict(Xte, only_topk=k, threads=threads)
predict_s = time.perf_counter() - t
sp.save_npz(d / "P.npz", sp.csr_matrix(P))
(d / "times.json").write_text(json.dumps({"train_s": train_s, "predict_s": predict_s}))
