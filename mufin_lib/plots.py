"""Figures, named after the paper's labels where one exists; saved atomically as PNG."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np

from .paths import atomic_path


def save(fig, path: Path, pdf: bool = False) -> Path:
    """The figure as PNG at `path` (and, with pdf, as PDF beside it), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    if pdf:
        with atomic_path(path.with_suffix(".pdf")) as tmp:
            fig.savefig(tmp, bbox_inches="tight", format="pdf")
    return path


def label_frequency(Y_train, title: str = ""):
    """Log-log plot of label frequency against rank (head and tail)."""
    freq = np.sort(np.asarray(Y_train.sum(0)).ravel())[::-1]
    freq = freq[freq > 0]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(np.arange(1, len(freq) + 1), freq, ".", ms=3)
    ax.set_xlabel("label rank")
    ax.set_ylabel("training points per label")
    ax.set_title(title or "label frequency")
    ax.grid(alpha=0.3, which="both")
    return fig


def product_grid(ds, store, uids: list[str], split: str = "label", n_images: int = 4, title: str = ""):
    """One row per product: its first images and its title."""
    titles = dict(zip(ds.uids[split], ds.titles[split]))
    fig, axes = plt.subplots(len(uids), n_images, figsize=(1.6 * n_images, 1.7 * len(uids)), squeeze=False)
    for r, uid in enumerate(uids):
        ims = store.get(uid)[:n_images] if store is not None else []
        for c in range(n_images):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(ims):
                ax.imshow(ims[c])
        axes[r, 0].set_title((titles.get(uid) or "(no title)")[:60], fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def short_name(method: str) -> tuple[str, str]:
    """(label, pipeline) of a table row's name: a fused row's Modules I-IV ("...; kit Modules I-IV: ...)") go to a
    footnote, once per figure, so that labels stay readable."""
    if method.startswith("MUFIN (") and "; " in method and method.endswith(")"):
        head, tail = method[:-1].split("; ", 1)
        return head + ")", tail
    return method, ""


def _footnote(fig, names) -> None:
    pipelines = sorted({p for p in (short_name(n)[1] for n in names) if p})
    if pipelines:
        fig.text(0.01, 0.002, textwrap.fill("MUFIN rows: " + "; ".join(pipelines), 150), fontsize=7, va="bottom")


def bar_metrics(df, metric_cols: list[str], label_col: str, title: str = ""):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    x = np.arange(len(metric_cols))
    w = 0.8 / max(1, len(df))
    for i, (_, row) in enumerate(df.iterrows()):
        ax.bar(x + i * w, [row[m] for m in metric_cols], w, label=short_name(str(row[label_col]))[0])
    ax.set_xticks(x + w * (len(df) - 1) / 2, [textwrap.fill(m, 16) for m in metric_cols])  # long names wrap
    ax.set_ylabel("%")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never hides a bar
    ax.set_title(textwrap.fill(short_name(title)[0] if title.startswith("MUFIN (") else title, 70))
    _footnote(fig, [str(v) for v in df[label_col]])
    return fig


def training_curves(histories: dict[str, list[dict]], metric: str | tuple[str, ...] = "val_P@1", title: str = ""):
    """Loss (left) and validation metrics (right) per epoch, one line per run and metric."""
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, h in histories.items():
        ep = [r["epoch"] for r in h]
        a.plot(ep, [r["loss"] for r in h], marker=".", label=name)
        for m in metrics:
            if h and m in h[0]:
                b.plot(ep, [r[m] for r in h], marker=".", label=name if len(metrics) == 1 else f"{name}: {m}")
        kept = [r["epoch"] for r in h if r.get("selected")]
        if kept:  # the epoch a validation-based choice kept
            b.axvline(kept[0], color="grey", ls=":", label=f"{name}: kept (epoch {kept[0]})")
    a.set_xlabel("epoch"); a.set_ylabel("loss"); a.grid(alpha=0.3); a.legend(fontsize=8)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ylabel = metrics[0].replace("val_", "validation ") if len(metrics) == 1 else "validation metric"
    b.set_xlabel("epoch"); b.set_ylabel(ylabel + " (%)"); b.grid(alpha=0.3)
    if b.lines and (len(metrics) > 1 or any(r.get("selected") for h in histories.values() for r in h)):
        b.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def recall_curves(curves: dict[str, dict[str, float]], title: str = ""):
    """Shortlist recall R@k against k, one line per retrieval variant."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, rec in curves.items():
        ks = [int(k.split("@")[1]) for k in rec]
        ax.plot(ks, list(rec.values()), marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k (shortlist size)")
    ax.set_ylabel("R@k (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def alpha_curve(curve: list[dict], metric: str, chosen: float, title: str = ""):
    fig, ax = plt.subplots(figsize=(5, 3.3))
    ax.plot([c["alpha"] for c in curve], [c[metric] for c in curve], marker=".")
    ax.axvline(chosen, color="grey", ls="--", lw=1)
    ax.set_xlabel("alpha (1 = embedding score only)")
    ax.set_ylabel(f"validation {metric} (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return fig


def curation_benchmark(results: list[dict], title: str = ""):
    """Throughput (records/s) and peak memory against input size, one line per method (ours and the peer)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method in sorted({r["method"] for r in results}):
        rs = sorted((r for r in results if r["method"] == method), key=lambda r: r["size"])
        sizes = [r["size"] for r in rs]
        axes[0].plot(sizes, [r["records_per_s"] for r in rs], "o-", label=method)
        axes[1].plot(sizes, [r["peak_rss_mb"] for r in rs], "o-", label=method)
    for ax, ylabel in zip(axes, ("records / s", "peak RSS (MB)")):
        ax.set_xscale("log")
        ax.set_xlabel("input records")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def throughput_bars(results: list[dict], label_keys: tuple[str, ...], value: str, title: str = ""):
    """Horizontal bars of one value per configuration (log scale: configurations differ by orders)."""
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(results)))
    labels = [" / ".join(str(r.get(k, "")) for k in label_keys) for r in results]
    vals = [r[value] for r in results]
    ax.barh(labels, vals)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:,.1f}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(value)
    ax.set_title(title)
    return fig


def intervals_vs_reference(table, metrics=("P@1", "PSP@5"), title: str = ""):
    """Each row's difference to the reference (MUFIN) with its 95% paired-bootstrap interval, one panel per metric:
    right of zero the row beats MUFIN, left of it MUFIN wins; an interval across zero is a tie."""
    t = table.dropna(subset=[f"{metrics[0]} - MUFIN"]).iloc[::-1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.35 * len(t) + 1.2), sharey=True)
    for ax, m in zip(np.atleast_1d(axes), metrics):
        y = np.arange(len(t))
        d, lo, hi = t[f"{m} - MUFIN"].to_numpy(), t[f"{m} 95% lo"].to_numpy(), t[f"{m} 95% hi"].to_numpy()
        colors = ["tab:green" if v == "win" else "tab:red" if v == "loss" else "grey" for v in t[f"{m} vs MUFIN"]]
        ax.hlines(y, lo, hi, colors=colors)
        ax.scatter(d, y, c=colors, zorder=3, s=14)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{m}: row - MUFIN (points of %)")
        ax.grid(alpha=0.3, axis="x")
    np.atleast_1d(axes)[0].set_yticks(np.arange(len(t)), [textwrap.fill(short_name(s)[0], 40) for s in t["method"]],
                                      fontsize=8)
    fig.suptitle(textwrap.fill(title, 90))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footnote(fig, list(t["method"]) + [title])
    return fig


def ablation_deltas(table, metrics=("P@1", "P@5"), title: str = ""):
    """Table 4 as a figure: each row's difference to the row it is compared with (its label says which), with its 95%
    paired-bootstrap interval, one panel per metric; the paper's stated delta (MM-AmazonTitles-300K) as an open
    diamond where it states one number."""
    t = table.dropna(subset=[f"d{metrics[0]}"]).iloc[::-1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 0.62 * len(t) + 1.4), sharey=True)
    for ax, m in zip(np.atleast_1d(axes), metrics):
        y = np.arange(len(t))
        d, lo, hi = t[f"d{m}"].to_numpy(float), t[f"d{m} lo"].to_numpy(float), t[f"d{m} hi"].to_numpy(float)
        colors = ["tab:green" if v == "win" else "tab:red" if v == "loss" else "grey" for v in t[f"d{m} verdict"]]
        ax.hlines(y, lo, hi, colors=colors)
        ax.scatter(d, y, c=colors, zorder=3, s=14, label="ours (95% interval)")
        paper = pd_numeric(t[f"paper d{m} (MM-AmazonTitles-300K)"])
        if np.isfinite(paper).any():
            ax.scatter(paper, y, marker="D", facecolors="none", edgecolors="black", zorder=4, s=22,
                       label="paper (MM-AmazonTitles-300K)")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{m}: row - compared row (points of %)")
        ax.grid(alpha=0.3, axis="x")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    labels = [textwrap.fill(short_name(r)[0], 60) + "\n  vs " + textwrap.shorten(short_name(a)[0], 56)
              for r, a in zip(t["row"], t["compared with"])]
    np.atleast_1d(axes)[0].set_yticks(np.arange(len(t)), labels, fontsize=7)
    fig.suptitle(textwrap.fill(title, 100))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _footnote(fig, list(t["row"]) + list(t["compared with"]))
    return fig


def data_size(bench: dict, title: str = ""):
    """benchmarks/data_size.py's results: test P@1 (95% bootstrap interval) of each row against the fit points per
    label (left), and the paired differences that say whether Module IV earns its keep (right)."""
    res = sorted(bench["results"], key=lambda r: r["fit_points_per_label"])
    x = np.array([r["fit_points_per_label"] for r in res])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [r["row"] for r in res[-1]["rows"] if r["family"] == "MUFIN" or "tuned" in r["row"]]
    for name in names:
        pts = [next((r for r in rr["rows"] if r["row"] == name), None) for rr in res]
        if any(p is None for p in pts):
            continue
        y = np.array([p["P@1"] for p in pts])
        err = np.array([[p["P@1"] - p["P@1 lo"] for p in pts], [p["P@1 hi"] - p["P@1"] for p in pts]])
        a.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=textwrap.shorten(name, 45),
                   ls="--" if pts[0]["family"] == "peer" else "-")
    a.set_xlabel("fit points per label (nnz / L)")
    a.set_ylabel("test P@1 (%)")
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    for name in res[-1]["differences"]:
        d = [rr["differences"][name] for rr in res]
        y = np.array([v["diff"] for v in d])
        b.errorbar(x, y, yerr=[y - np.array([v["lo"] for v in d]), np.array([v["hi"] for v in d]) - y], marker="o",
                   ms=4, capsize=3, label=name)
    b.axhline(0, color="black", lw=0.8)
    b.set_xlabel("fit points per label (nnz / L)")
    b.set_ylabel("paired difference of P@1 (points of %)")
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(title or f"does each part's gain grow with data? ({bench['preset']})", 100))
    fig.tight_layout()
    return fig


def pd_numeric(values) -> np.ndarray:
    """Numbers of a column that may hold stated ranges ("-2 to -3"): NaN where it is not one number."""
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(np.nan)
    return np.array(out)


def per_category(table, methods: list[str], metric: str = "P@5", title: str = ""):
    """Fig. 3: the metric per category (rows of Table 6, the overall row first), one bar per method."""
    t = table.iloc[::-1]  # the overall row on top
    y = np.arange(len(t))
    h = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(t) * max(1, len(methods)) / 2 + 1.5))
    for i, m in enumerate(methods):
        ax.barh(y + (len(methods) - 1 - i) * h, t[f"{m} {metric}"], h, label=m)
    ax.set_yticks(y + h * (len(methods) - 1) / 2,
                  [f"{c} ({n})" for c, n in zip(t["category"], t["test points"])], fontsize=8)
    ax.set_xlabel(f"{metric} (%)")
    ax.set_ylabel("category (test points)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title, fontsize=9)
    return fig


def head_tail(table, bins, metrics=("P@5", "PSP@5"), title: str = ""):
    """Fig. 4: each label bin's share of the metric (head left, tail right), one bar per method."""
    methods = list(dict.fromkeys(table["method"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    x = np.arange(len(bins))
    w = 0.8 / max(1, len(methods))
    labels = [f"{b}\n{r}" for b, r in zip(bins["bin"], bins["train points per label"])]
    for ax, m in zip(axes[0], metrics):
        for i, name in enumerate(methods):
            v = table[table["method"] == name].sort_values("bin")[m]
            ax.bar(x + i * w, v, w, label=name)
        ax.set_xticks(x + w * (len(methods) - 1) / 2, labels, fontsize=7)
        ax.set_xlabel(f"label bin, head (1) to tail, and its training points per label\n"
                      f"(each bin: {int(bins['test positives'].iloc[0])} test positives, to within one label's)", fontsize=8)
        ax.set_ylabel(f"share of {m} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _thumb(ax, image, size: int = 128):
    """An image letterboxed into a size x size square (every thumbnail the same size), or a grey placeholder."""
    from PIL import Image

    canvas = Image.new("RGB", (size, size), (235, 235, 235))
    if image is not None:
        im = image.convert("RGB")
        im.thumbnail((size, size))
        canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    ax.imshow(canvas)
    if image is None:
        ax.text(size / 2, size / 2, "no photo", ha="center", va="center", fontsize=7, color="#555555")
    ax.set_xticks([]); ax.set_yticks([])


def _frame(ax, good: bool) -> None:
    """A thick frame that does not rely on colour alone: solid green for right / bought, dashed red otherwise."""
    for side in ax.spines.values():
        side.set_visible(True)
        side.set_linewidth(3)
        side.set_color("#1a9850" if good else "#d73027")
        side.set_linestyle("-" if good else "--")


def recommendation_grid(items: list[dict], methods: list[str], title: str = "", wrap: int = 20):
    """Fig. 8: per product one block of rows, one row per method: the product (photo, title) on the left, then
    its top recommendations, each with its photo and title and, where the truth is known, a mark that does not rely
    on colour alone ("✓ bought" with a green frame, "✗ not bought" with a red dashed frame).
    items: [{"title", "image", "recs": {method: [{"title", "image", "relevant": True | False | None}]}}]."""
    k = max((len(r) for it in items for r in it["recs"].values()), default=1)
    n_rows = len(items) * len(methods)
    fig, axes = plt.subplots(n_rows, k + 1, figsize=(1.55 * (k + 1), 2.05 * n_rows), squeeze=False)
    for i, it in enumerate(items):
        for j, m in enumerate(methods):
            r = i * len(methods) + j
            ax = axes[r, 0]
            if j == 0:
                _thumb(ax, it["image"])
                ax.set_title(textwrap.fill(it["title"] or "(no title)", wrap)[:90], fontsize=7, loc="left")
                ax.set_ylabel("product", fontsize=7)
            else:
                ax.axis("off")
            recs = it["recs"].get(m, [])
            for c in range(k):
                ax = axes[r, c + 1]
                if c >= len(recs):
                    ax.axis("off")
                    continue
                rec = recs[c]
                _thumb(ax, rec["image"])
                mark = {True: "✓ bought", False: "✗ not bought", None: ""}[rec["relevant"]]
                if rec["relevant"] is not None:
                    _frame(ax, rec["relevant"])
                head = f"{c + 1}. {mark}".strip()
                ax.set_title(head + "\n" + textwrap.fill(rec["title"] or "(no title)", wrap)[:62], fontsize=6.5,
                             loc="left")
                if c == 0:
                    ax.set_ylabel(textwrap.fill(m, 18), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title above the first row
    return fig


def fitb_examples(examples: list[dict], methods_name: str = "MUFIN", title: str = "", wrap: int = 18):
    """Fill-in-the-blank questions: per question one row of the outfit's given items with a "?" tile at the blank,
    and one row of the candidates, the right one in a green frame ("✓ right"), the model's choice marked
    ("◆ chosen", a dashed frame when it is wrong): marks that do not rely on colour alone.
    examples: [{"given", "candidates" (titles), "right", "chosen", "scores", "images": {"given", "candidates", "blank"}}]."""
    from PIL import Image

    def load(p):
        if p is None:
            return None
        try:
            with Image.open(p) as im:
                return im.convert("RGB")
        except OSError:
            return None

    k = max((max(len(x["given"]) + 1, len(x["candidates"])) for x in examples), default=1)
    fig, axes = plt.subplots(2 * len(examples), k, figsize=(1.6 * k, 2.2 * 2 * len(examples)), squeeze=False)
    for e, x in enumerate(examples):
        given = list(zip(x["given"], x["images"]["given"]))
        blank = min(max(int(x["images"]["blank"]) - 1, 0), len(given))
        tiles = given[:blank] + [None] + given[blank:]
        for c in range(k):
            ax = axes[2 * e, c]
            if c >= len(tiles):
                ax.axis("off")
                continue
            if tiles[c] is None:
                _thumb(ax, Image.new("RGB", (128, 128), (255, 255, 255)))
                ax.text(64, 64, "?", ha="center", va="center", fontsize=28, color="#444444")
                ax.set_title("blank", fontsize=7, loc="left")
            else:
                _thumb(ax, load(tiles[c][1]))
                ax.set_title(textwrap.fill(tiles[c][0] or "(no title)", wrap)[:60], fontsize=6.5, loc="left")
            if c == 0:
                ax.set_ylabel(f"question {x.get('question', e)}\noutfit", fontsize=7)
        for c in range(k):
            ax = axes[2 * e + 1, c]
            if c >= len(x["candidates"]):
                ax.axis("off")
                continue
            _thumb(ax, load(x["images"]["candidates"][c]))
            marks = (["✓ right"] if c == x["right"] else []) + (["◆ chosen"] if c == x["chosen"] else [])
            if marks:
                _frame(ax, c == x["right"])
            ax.set_title(" ".join(marks) + f" ({x['scores'][c]:.3f})\n"
                         + textwrap.fill(x["candidates"][c] or "(no title)", wrap)[:60], fontsize=6.5, loc="left")
            if c == 0:
                ax.set_ylabel(f"candidates\n({methods_name}'s score)", fontsize=7)
    if title:
        fig.suptitle(textwrap.fill(title, 100), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig


def scaling(table, title: str = ""):
    """Left: ms per point against L (log axes), one query on one thread, each step of the MUFIN path with exact and
    HNSW votes and the total, PLT beside it; the target as a dashed line. Right: peak memory against L."""
    single = table[table["mode"].isin(["single_query_1_thread", "all queries in one call, 1 thread"])]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, d in single.groupby("method"):
        d = d.sort_values("L")
        a.plot(d["L"], d["total_ms"], marker="o", label=f"{method}: total")
        if "votes_ms" in d and d["votes_ms"].notna().any():
            for step, ls in (("votes_ms", ":"), ("rank_label_side_ahead_ms", "--"), ("retrieve_ms", "-.")):
                a.plot(d["L"], d[step], ls=ls, lw=1, alpha=0.7, label=f"{method}: {step[:-3]}")
    a.axhline(2.5, color="black", ls="--", lw=0.8)
    a.text(single["L"].min(), 2.7, "target at 1M: 2.5 ms", fontsize=7)
    a.set_xscale("log"); a.set_yscale("log")
    a.set_xlabel("labels L (fit points 2 L)"); a.set_ylabel("ms per point, one query, one thread")
    a.legend(fontsize=6); a.grid(alpha=0.3, which="both")
    mem = table.dropna(subset=["peak_rss_gb"]).groupby("L")["peak_rss_gb"].max()
    b.plot(mem.index, mem.values, marker="o")
    b.set_xscale("log"); b.set_xlabel("labels L"); b.set_ylabel("peak memory of the process (GB)"); b.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(title, 100), fontsize=9)
    fig.tight_layout()
    return fig


def real_shape(shape, target_gb: float, title: str = ""):
    """Each stage at the real data's shape: seconds (left) and peak memory with the target line (right); the stages
    that finished."""
    shape = shape.dropna(subset=["seconds", "peak_rss_GB"]).reset_index(drop=True)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [str(n).split("_", 1)[0] + " " + str(n).split("_", 2)[-1] for n in shape["stage"]]
    y = range(len(shape))
    a.barh(y, shape["seconds"] / 60, color="tab:blue")
    a.set_yticks(list(y), names); a.invert_yaxis(); a.set_xlabel("minutes"); a.grid(alpha=0.3, axis="x")
    b.barh(y, shape["peak_rss_GB"], color=["tab:red" if v > target_gb else "tab:green" for v in shape["peak_rss_GB"]])
    b.axvline(target_gb, ls="--", color="k", label=f"target {target_gb:g} GB")
    b.set_yticks(list(y), names); b.invert_yaxis(); b.set_xlabel("peak memory of the stage's process (GB)")
    b.legend(); b.grid(alpha=0.3, axis="x")
    fig.suptitle(title); fig.tight_layout()
    return fig
