"""Stage 14, outfits: outfit completion (the paper's Table 3, Polyvore-Disjoint) on a run whose stage 01 read an
outfit set (source polyvore, task outfits; Modules I-IV trained on the train outfits' items).

Every valid and test item is one the run never saw (the disjoint split): MUFIN scores it from its content alone
(Module I's x^1 of both items; Module IV's A_C over the two bags, with the label's free vector at zero). alpha, and
the weight of the kit's added term (fine-category co-occurrence of the train outfits), are chosen on the valid
split's FITB questions (for FITB) and compatibility lines (for AUC), by a rule fixed before test is scored
(`outfits.choose_weights`: the best valid value; ties to the larger alpha, then the smaller weight). Two peers get
the same budget, by the same rule: the frozen text and image cosines mixed by a weight on MUFIN's alpha grid, and title
TF-IDF plus the same co-occurrence term; the other peers have nothing to tune. Test is scored once per run of this stage (`test_scorings` in metrics.json)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import outfits as of
from ..baselines import frozen_vectors, tfidf
from ..bags import BagTable
from ..config import ranged
from ..data.polyvore import read_polyvore
from ..encoders import embed_dataset
from ..layout import METRICS
from ..report import write_metrics, write_table

MAIN = "MUFIN (Modules I-IV, paper's score: alpha x Module I + (1 - alpha) x Module IV, alpha on valid)"
KIT = "MUFIN + fine-category co-occurrence (kit's added term, weight on valid)"
# the peers given MUFIN's tuning budget: a weight on valid by the same rule and grids
TUNED_FROZEN = "frozen encoders (text + image, weight on valid)"
TUNED_TFIDF = "TF-IDF (title) + fine-category co-occurrence (weight on valid)"
# Table 3's baselines: published on Polyvore-Disjoint; their numbers are not in ../shared/paper_tables, and none of
# them is run here
INTERACTIVE_RUN = "interactive-outfits"  # the run notebook 14 opens without a run_dir (notebooks/conftest.py makes it)
PAPER_BASELINES = ("ADDE-O", "CSA-Net", "Type-aware", "S-VAL", "SCE-Net", "SSVR-Net")


@dataclass
class OutfitsParams:
    """Stage 14's parameters (notebook 14's parameters cell equals these defaults)."""
    alphas: int = ranged(11, 2)  # alpha on an even grid of this many values in [0, 1], chosen on valid
    added_term: bool = True  # the kit's row: MUFIN + fine-category co-occurrence (its weight chosen on valid)
    bootstrap: int = ranged(1000, 100)  # resamples for the 95% intervals (questions; outfit lines)
    examples: int = ranged(2, 0)  # test questions drawn in the qualitative figure (one right, one wrong where there are)
    seed: int = ranged(0, 0)


@dataclass
class OutfitsResult:
    table: pd.DataFrame  # Table 3's layout: FITB accuracy and compatibility AUC, intervals, vs MUFIN
    curves: pd.DataFrame  # the valid curves alpha (and weight) were chosen on: row, measure, alpha, w, value
    examples: list  # what plots.fitb_examples draws
    summary: dict  # metrics.json


def outfit_data(run):
    """(the outfit set, stage 01's record of it): a clear error on a run that has none."""
    rec = run.info.get("outfits")
    if not rec or rec.get("task") != "outfits":
        raise ValueError(f"run {run.dir.name}: stage 01 read no outfit set for outfit completion (source "
                         f"{run.info.get('source')!r}; expected source: polyvore, task: outfits): "
                         "mufin run --preset mango (real outfits) or --preset outfits-smoke")
    return read_polyvore(rec["polyvore_root"], rec["split"]), rec


def _peer_items(o, uids: list[str], emb) -> dict[str, tuple[str, object]]:
    """name -> (what it computes, its per-item part, built once for both splits): vectors for a cosine, or the
    co-occurrence table with the items' category rows."""
    train = o.split_items("train")  # the vocabulary and IDF come from the train items alone
    cat = {u: o.items[u].category_id for u in o.items}
    cooc = of.CategoryCooccurrence(o.outfits["train"], cat)
    _, T = tfidf([o.items[u].text("title") for u in train], [o.items[u].text("title") for u in uids])
    _, TD = tfidf([o.items[u].text("title+description") for u in train], [o.items[u].text("title+description") for u in uids])
    out = {"fine-category co-occurrence": ("PMI of the two fine categories in the train outfits",
                                           (cooc, np.array([cooc.index[cat[u]] for u in uids]))),
           "TF-IDF (title)": ("cosine of title TF-IDF (fit on the train items)", T),
           "TF-IDF (title + description)": ("cosine of title + description TF-IDF", TD)}
    for m in ("text", "image", "text+image"):
        if m == "text" or emb.image.shape[0]:
            out[f"frozen encoders ({m})"] = (f"cosine of the frozen pretrained {m} vectors", frozen_vectors(emb, uids, m))
    return out


def _peer_scores(peer_items: dict, a, b, seed: int) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (what it computes, pair scores) for each peer, on one split's pairs."""
    out = {"random": ("uniform random pair scores", np.random.default_rng(seed).random(len(a)))}
    for name, (what, rep) in peer_items.items():
        out[name] = (what, rep[0].scores(rep[1][a], rep[1][b]) if isinstance(rep, tuple) else of.cosine(rep, a, b))
    return out


def stage(run, params: OutfitsParams) -> OutfitsResult:
    """Score every valid and test question and outfit by every row; choose MUFIN's weights on valid; write
    outfits/table3_outfits.{csv,md,tex}, fitb_examples.csv and metrics.json."""
    out = run.stage("outfits")
    o, rec = outfit_data(run)
    p1 = run.module1_saved
    if not p1.freeze_encoders:
        raise ValueError("stage 14 scores new items through the frozen encoders' cached outputs; this run's Module I "
                         "fine-tuned them (02.freeze_encoders=false), which stage 14 does not read yet")
    uids = list(dict.fromkeys(o.split_items("valid") + o.split_items("test")))
    emb_all = embed_dataset(rec["items_root"], text_encoder=p1.text_encoder, image_encoder=p1.image_encoder)
    table_all = BagTable(emb_all, p1.keep_top_k, p1.modalities)
    rows = {u: i for i, u in enumerate(uids)}
    states = of.item_states(run.module1, run.ranker, table_all, table_all.rows_of(uids))
    alphas = np.linspace(0, 1, params.alphas)
    weights = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    # rows with weights, each tuned on valid by one rule with the same grids: (family, what it computes, its two
    # scores mixed by alpha, the added term weighted by w or None, the alphas it may take)
    tuned = {MAIN: ("MUFIN", "alpha Module I + (1 - alpha) Module IV (unseen-label score)", "emb", "rnk", None, alphas),
             TUNED_FROZEN: ("peer", "beta text cosine + (1 - beta) image cosine, beta on valid (MUFIN's alpha grid)",
                            "frozen encoders (text)", "frozen encoders (image)", None, alphas),
             TUNED_TFIDF: ("peer", "title TF-IDF cosine + w x fine-category PMI, w on valid (the kit term's grid)",
                           "TF-IDF (title)", "TF-IDF (title)", "fine-category co-occurrence", [1.0])}
    if params.added_term:
        tuned[KIT] = ("kit", "the paper's score + w x fine-category PMI (train outfits)", "emb", "rnk",
                      "fine-category co-occurrence", alphas)
    fixed = {"Module I alone (x^1 . z^1)": ("MUFIN's parts", "Module I's embedding score (alpha = 1)", "emb"),
             "Module IV alone (A_C + z^1, no free vector)": ("MUFIN's parts", "Module IV's score (alpha = 0)", "rnk")}
    peer_items = _peer_items(o, uids, emb_all)
    scored, right, oscores, chosen, curves = {}, {}, {}, {}, []
    test_scorings = 0
    for split in ("valid", "test"):
        fp, cp = of.fitb_pairs(o.fitb[split], rows), of.compat_pairs(o.compat[split], rows)
        a, b = np.concatenate([fp.a, cp.a]), np.concatenate([fp.b, cp.b])
        nf = len(fp.a)
        P = dict(zip(("emb", "rnk"), of.mufin_pair_scores(run.ranker, states, a, b)))
        peers = _peer_scores(peer_items, a, b, params.seed)
        P |= {k: v for k, (_, v) in peers.items()}
        tuned = {k: v for k, v in tuned.items() if v[2] in P and v[3] in P}  # image rows need images
        if split == "valid":  # the rule, on valid only: the best value, ties to the larger alpha, then the smaller w
            measures = {"FITB": lambda s: of.fitb_right(s[:nf], fp).mean(),
                        "AUC": lambda s: of.auc(of.outfit_scores(s[nf:], cp), cp.labels)}
            for name, (_, _, x, y, extra, al_grid) in tuned.items():
                for measure, fn in measures.items():
                    al, w, curve = of.choose_weights(fn, P[x], P[y], P[extra] if extra else None, al_grid, weights)
                    chosen[(name, measure)] = {"alpha": al, "w": w}
                    curves += [{"row": name, "measure": measure, **c} for c in curve]
            continue
        test_scorings += 1
        for name, (fam, what, x, y, extra, _) in tuned.items():
            per = {}
            for measure in ("FITB", "AUC"):
                ch = chosen[(name, measure)]
                per[measure] = ch["alpha"] * P[x] + (1 - ch["alpha"]) * P[y] + (ch["w"] * P[extra] if extra and ch["w"] else 0.0)
            scored[name] = (fam, what, per)
        for name, (fam, what, x) in fixed.items():
            scored[name] = (fam, what, {"FITB": P[x], "AUC": P[x]})
        for name, (what, s) in peers.items():
            scored[name] = ("peer", what, {"FITB": s, "AUC": s})
        for name, (_, _, per) in scored.items():
            right[name] = of.fitb_right(per["FITB"][:nf], fp)
            oscores[name] = of.outfit_scores(per["AUC"][nf:], cp)
        labels = cp.labels
    rank = {"MUFIN": 0, "kit": 1, "MUFIN's parts": 2, "peer": 3}
    recs = []
    for name, (fam, what, _) in sorted(scored.items(), key=lambda kv: rank[kv[1][0]]):
        lo, hi = of.accuracy_interval(right[name], params.bootstrap, params.seed)
        alo, ahi = of.auc_interval(oscores[name], labels, params.bootstrap, params.seed)
        row = {"method": name, "family": fam, "computes": what,
               "alpha (FITB, AUC)": ", ".join(f"{chosen[(name, m)]['alpha']:.1f}" for m in ("FITB", "AUC"))
               if (name, "FITB") in chosen and tuned[name][5] is alphas else "",
               "w (FITB, AUC)": ", ".join(f"{chosen[(name, m)]['w']:g}" for m in ("FITB", "AUC"))
               if (name, "FITB") in chosen and tuned[name][4] else "",
               "FITB": round(100 * right[name].mean(), 2), "FITB 95% CI": f"[{lo:.2f}, {hi:.2f}]",
               "AUC": round(100 * of.auc(oscores[name], labels), 2), "AUC 95% CI": f"[{100 * alo:.2f}, {100 * ahi:.2f}]"}
        for m, d in (("FITB", None if name == MAIN else of.fitb_difference(right[name], right[MAIN], params.bootstrap, params.seed)),
                     ("AUC", None if name == MAIN else of.auc_difference(oscores[name], oscores[MAIN], labels, params.bootstrap, params.seed))):
            row |= {f"{m} - MUFIN": d and d["diff"], f"{m} 95% lo": d and d["lo"], f"{m} 95% hi": d and d["hi"],
                    f"{m} vs MUFIN": d and d["verdict"]}
        recs.append(row)
    for name in PAPER_BASELINES:
        recs.append({"method": name, "family": "paper's Table 3 baseline (Polyvore-Disjoint; not run here, numbers not "
                                            "in ../shared/paper_tables)", "computes": "", "FITB": None, "AUC": None})
    table = pd.DataFrame(recs)
    kind = "SYNTHETIC outfits" if run.synthetic else f"real data: {run.data_name}"
    write_table(table, out, "table3_outfits", caption=f"Outfit completion, {rec['split']} test split ({kind}): FITB "
                f"accuracy (%) over {len(right[MAIN])} questions, compatibility AUC (x 100) over {len(labels)} outfit lines")
    examples = _examples(o, right, fp, scored, params)  # fp: the test questions' pairs
    write_table(pd.DataFrame([{k: v for k, v in x.items() if k != "images"} for x in examples]), out, "fitb_examples")
    summary = {"data": run.data_title, "synthetic": run.synthetic, "split": rec["split"], "test_scorings": test_scorings,
               "questions": {s: len(o.fitb[s]) for s in ("valid", "test")},
               "outfit_lines": {s: len(o.compat[s]) for s in ("valid", "test")},
               "items_scored": len(uids), "items_seen_in_training": len(set(uids) & set(run.dataset.uids["label"])),
               "chosen": {f"{n} | {m}": v for (n, m), v in chosen.items()},
               "rows": table.drop(columns=["computes"]).astype(object).where(table.drop(columns=["computes"]).notna(), None)
               .to_dict("records")}  # None, not NaN, where a row has no number: metrics.json stays JSON
    write_metrics(out, summary, METRICS)
    return OutfitsResult(table, pd.DataFrame(curves), examples, summary)


def _examples(o, right, fp, scored, params) -> list[dict]:
    """Test questions for the figure: the first MUFIN answers right and the first it answers wrong, in a seeded
    random order of the questions (a rule on nothing but the seed), then more in that order."""
    qs = o.fitb["test"]
    order = [int(i) for i in np.random.default_rng(params.seed).permutation(len(qs))]
    ok = right[MAIN]
    pick = [i for i in order if ok[i] == 1][:1] + [i for i in order if ok[i] == 0][:1]
    pick = (pick + [i for i in order if i not in pick])[:params.examples]
    cands = of.fitb_candidate_scores(scored[MAIN][2]["FITB"][:len(fp.a)], fp)
    out = []
    for i in pick:
        q = qs[i]
        out.append({"question": i, "given": [o.items[g].title for g in q.given],
                    "candidates": [o.items[c].title for c in q.answers], "right": int(q.correct),
                    "chosen": int(np.argmax(cands[i])), "scores": [round(float(x), 4) for x in cands[i]],
                    "images": {"given": [o.items[g].image for g in q.given],
                               "candidates": [o.items[c].image for c in q.answers], "blank": q.blank_position}})
    return out
