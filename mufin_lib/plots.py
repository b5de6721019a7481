"""Figures, named after the paper's labels where one exists; saved atomically as PNG."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np

from .paths import atomic_path


def save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
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


def bar_metrics(df, metric_cols: list[str], label_col: str, title: str = ""):
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    x = np.arange(len(metric_cols))
    w = 0.8 / max(1, len(df))
    for i, (_, row) in enumerate(df.iterrows()):
        ax.bar(x + i * w, [row[m] for m in metric_cols], w, label=str(row[label_col]))
    ax.set_xticks(x + w * (len(df) - 1) / 2, [textwrap.fill(m, 16) for m in metric_cols])  # long names wrap
    ax.set_ylabel("%")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: never hides a bar
    ax.set_title(title)
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
    np.atleast_1d(axes)[0].set_yticks(np.arange(len(t)), [textwrap.fill(s, 40) for s in t["method"]], fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
