"""Write an evaluation's metrics.json, a Markdown summary and a one-file HTML report with plots
(recall@K curves, per-slice bars, zero-shot confusion matrices, example queries with thumbnails).

Plots are drawn with matplotlib's Agg backend and embedded as base64 PNGs, thumbnails as base64
JPEGs, so report.html is a single self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)

THUMB = 72  # thumbnail longest side, pixels
MAX_SLICE_VALUES = 10


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers, tuple -> list."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def fmt(v: Any) -> str:
    """A metric value as it appears in the Markdown and HTML tables (4 decimals; "n/a" for undefined)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def protocol_tables(result: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """``{protocol: (header, rows)}``: one row per system, one column per metric of that protocol."""
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    by_proto: dict[str, list[str]] = {}
    for metrics in result["systems"].values():
        for key in metrics:
            proto, metric = key.rsplit("/", 1) if key.startswith("zeroshot/") else key.split("/", 1)
            cols = by_proto.setdefault(proto, [])
            if metric not in cols:
                cols.append(metric)
    order = ("title2image", "attributes", "image2product", "composed")
    protos = sorted(by_proto, key=lambda p: (order.index(p) if p in order else len(order), p))
    for proto in protos:
        cols = by_proto[proto]
        rows = []
        for system, metrics in result["systems"].items():
            if any(f"{proto}/{c}" in metrics for c in cols):
                rows.append([system] + [fmt(metrics.get(f"{proto}/{c}")) for c in cols])
        tables[proto] = (["system", *cols], rows)
    return tables


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


FUSION_TITLE = "Fusion: RRF vs weighted sum vs calibrated (the index's own test queries)"


def fusion_table(result: dict, digits: int = 4) -> tuple[str, list[str], list[list[str]]] | None:
    """The served index's calibration (``result["fusion"]``: ``weights`` and ``comparison``, as
    ``search.calibration.calibrate`` gives them), when there is one: ``(weights line, header, rows)``."""
    from prodsearch.search.calibration import comparison_table, format_weights

    fusion = result.get("fusion") or {}
    if not fusion.get("comparison"):
        return None
    weights = "; ".join(f"{kind}: {format_weights(ws)}" for kind, ws in (fusion.get("weights") or {}).items())
    if fusion.get("anchor_pool"):
        weights += f"; photo + text queries re-rank the photo's {fusion['anchor_pool']} nearest products"
    return (weights, *comparison_table(fusion["comparison"], digits=digits))


def slice_tables(result: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """``{metric: (header, rows)}``: rows = systems, columns = slice values (largest first)."""
    sl = result.get("slices") or {}
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    if not sl.get("systems"):
        return out
    metrics: list[str] = []
    for per_value in sl["systems"].values():
        for vals in per_value.values():
            metrics += [m for m in vals if m not in metrics]
    for metric in metrics:
        proto = metric.rsplit("/", 1)[0] if metric.startswith("zeroshot/") else metric.split("/", 1)[0]
        counts = sl["counts"].get(proto, {})
        values = list(counts)[:MAX_SLICE_VALUES]
        rows = []
        for system, per_value in sl["systems"].items():
            if any(metric in per_value.get(v, {}) for v in values):
                rows.append([system] + [fmt(per_value.get(v, {}).get(metric)) for v in values])
        if rows:
            out[metric] = (["system", *[f"{v} (n={counts[v]})" for v in values]], rows)
    return out


def markdown(result: dict) -> str:
    cfg = result.get("config", {})
    lines = ["# prodsearch evaluation", ""]
    target = cfg.get("target", {})
    if target:
        lines.append(f"Target: `{target.get('path')}` ({target.get('kind')})  ")
    corpus = cfg.get("corpus", {})
    lines.append(
        f"Corpus: {corpus.get('products')} products ({corpus.get('with_image')} with a photo), "
        f"test split {corpus.get('test')}; seed {cfg.get('seed')}, max queries {cfg.get('max_queries')}  "
    )
    f = cfg.get("fields", {})
    lines.append(
        f"Fields: type = `{f.get('type')}`, colour = `{f.get('colour')}`, "
        f"attributes = {f.get('attributes')} ({f.get('how')})"
    )
    lines.append("")
    if "served" in result.get("systems", {}):
        lines += [
            "System `served` is the index's own search (default mode and fusion, its approximate "
            "vector indexes, same-photo pinning): what a shopper gets. The others re-rank the stored "
            "vectors exactly, one signal or plain RRF at a time.",
            "",
        ]
    for proto, (header, rows) in protocol_tables(result).items():
        n = result.get("queries", {}).get(proto)
        lines += [f"## {proto}" + (f" ({n} queries)" if n else ""), "", _md_table(header, rows), ""]
    fusion = fusion_table(result)
    if fusion:
        weights, header, rows = fusion
        lines += [f"## {FUSION_TITLE}", "", f"Calibrated weights per query kind: {weights}", ""]
        lines += [_md_table(header, rows), ""]
    st = slice_tables(result)
    if st:
        lines += [f"## Per-slice metrics by `{result['slices']['field']}`", ""]
        for metric, (header, rows) in st.items():
            lines += [f"### {metric}", "", _md_table(header, rows), ""]
    sk = result.get("skipped", {})
    if sk.get("protocols") or sk.get("systems"):
        lines += ["## Skipped", ""]
        for proto, why in sk.get("protocols", {}).items():
            lines.append(f"- **{proto}**: {why}")
        for system, per in sk.get("systems", {}).items():
            for proto, why in per.items():
                lines.append(f"- {system} on {proto}: {why}")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plots (matplotlib, Agg)
def _plt():
    from prodsearch.errors import require

    mpl = require("matplotlib", "eval")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_curves(curves: dict[str, dict[str, float]], title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for system, curve in curves.items():
        ks = sorted(int(k) for k in curve)
        ax.plot(
            ks,
            [curve[str(k)] if curve[str(k)] is not None else float("nan") for k in ks],
            marker="o",
            label=system,
        )
    ax.set_xscale("log")
    all_ks = sorted({int(k) for c in curves.values() for k in c})
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_slices(header: list[str], rows: list[list[str]], title: str) -> str:
    plt = _plt()
    import numpy as np

    values = header[1:]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(values) + 2), 3.4))
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(values))
    for i, row in enumerate(rows):
        ys = [float(v) if v != "n/a" else 0.0 for v in row[1:]]
        ax.bar(x + i * width, ys, width, label=row[0])
    ax.set_xticks(x + width * (len(rows) - 1) / 2, values, rotation=30, ha="right", fontsize=7)
    ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_confusion(summary: dict, title: str) -> str:
    plt = _plt()
    import numpy as np

    m = np.asarray(summary["matrix"], dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(summary["labels"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * n + 2), max(3.5, 0.3 * n + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), summary["labels"], rotation=90, fontsize=6)
    ax.set_yticks(range(n), summary["labels"], fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def _thumb(src: Any) -> str | None:
    """Base64 JPEG thumbnail of an image path or PIL image, or None if it cannot be read."""
    try:
        from PIL import Image

        from prodsearch.catalog.images import load_image

        img = src if isinstance(src, Image.Image) else load_image(src)
        img = img.copy()
        img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=80)
        return base64.b64encode(buf.getvalue()).decode()
    except Exception as err:  # a broken thumbnail must never break the report
        log.debug("thumbnail failed for %s: %s", src, err)
        return None


def _img_tag(b64: str | None, caption: str) -> str:
    cap = html.escape(caption)
    if b64 is None:
        return f'<figure class="t"><div class="noimg"></div><figcaption>{cap}</figcaption></figure>'
    return f'<figure class="t"><img src="data:image/jpeg;base64,{b64}" title="{cap}"><figcaption>{cap}</figcaption></figure>'


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}
figure.t{display:inline-block;margin:2px;width:80px;vertical-align:top;font-size:9px;text-align:center}
figure.t img{max-width:72px;max-height:72px}.noimg{width:72px;height:72px;background:#eee}
.ex{border-top:1px solid #ddd;padding:.4em 0}.sys{display:inline-block;width:150px;font-size:12px;vertical-align:top}
img.plot{margin:.3em}"""


def html_report(result: dict, corpus: Any = None) -> str:
    """The whole report as one HTML string (plots need matplotlib; thumbnails need ``corpus``)."""
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>prodsearch evaluation</title><style>{_CSS}</style>"
    ]
    md_head = markdown(result).split("\n## ")[0].splitlines()[2:]
    parts.append(
        "<h1>prodsearch evaluation</h1><p>"
        + "<br>".join(html.escape(x.rstrip()) for x in md_head if x)
        + "</p>"
    )
    curves = result.get("curves", {})
    for proto, (header, rows) in protocol_tables(result).items():
        n = result.get("queries", {}).get(proto)
        parts.append(f"<h2>{html.escape(proto)}" + (f" ({n} queries)" if n else "") + "</h2>")
        parts.append(_html_table(header, rows))
        if proto in curves:
            parts.append(
                f'<img class="plot" src="data:image/png;base64,{plot_curves(curves[proto], proto)}">'
            )
    fusion = fusion_table(result)
    if fusion:
        weights, header, rows = fusion
        parts.append(
            f"<h2>{html.escape(FUSION_TITLE)}</h2><p>Calibrated weights per query kind: {html.escape(weights)}</p>"
        )
        parts.append(_html_table(header, rows))
    st = slice_tables(result)
    if st:
        parts.append(f"<h2>Per-slice metrics by {html.escape(str(result['slices']['field']))}</h2>")
        for metric, (header, rows) in st.items():
            parts.append(f"<h3>{html.escape(metric)}</h3>" + _html_table(header, rows))
            parts.append(
                f'<img class="plot" src="data:image/png;base64,{plot_slices(header, rows, metric)}">'
            )
    zs = result.get("zeroshot", {})
    if zs:
        parts.append("<h2>Zero-shot confusion matrices</h2>")
        for system, per_field in zs.items():
            for fname, summary in per_field.items():
                title = f"{system}: {fname} (top {summary['shown']} of {summary['classes']} classes, row-normalised)"
                parts.append(
                    f'<img class="plot" src="data:image/png;base64,{plot_confusion(summary, title)}">'
                )
    parts.append(_examples_html(result, corpus))
    sk = result.get("skipped", {})
    if sk.get("protocols") or sk.get("systems"):
        items = [
            f"<li><b>{html.escape(p)}</b>: {html.escape(w)}</li>" for p, w in sk.get("protocols", {}).items()
        ]
        items += [
            f"<li>{html.escape(s)} on {html.escape(p)}: {html.escape(w)}</li>"
            for s, per in sk.get("systems", {}).items()
            for p, w in per.items()
        ]
        parts.append("<h2>Skipped</h2><ul>" + "".join(items) + "</ul>")
    parts.append(
        "<h2>Configuration</h2><pre>"
        + html.escape(json.dumps(_clean(result.get("config", {})), indent=2))
        + "</pre>"
    )
    return "\n".join(parts)


def _examples_html(result: dict, corpus: Any) -> str:
    if corpus is None or not result.get("examples"):
        return ""
    out = ["<h2>Example queries</h2>"]
    seed = result.get("config", {}).get("seed", 0)
    for proto, ex in result["examples"].items():
        if not ex.get("results"):
            continue
        out.append(f"<h3>{html.escape(proto)}</h3>")
        photos = None
        if proto == "image2product":
            from prodsearch.evaluation.augment import AugmentedPhotos

            paths = [corpus.products[corpus.pos_of[s]].image_path for s in ex["source"]]
            photos = AugmentedPhotos(paths, seed=seed)
        elif proto == "composed":  # the source product's own photo, with the colour word
            photos = [corpus.products[corpus.pos_of[s]].image_path for s in ex["source"]]
        for qi, query in enumerate(ex["queries"]):
            block = ['<div class="ex">']
            if photos is not None:
                block.append(_img_tag(_thumb(photos[qi]), "query photo"))
                if proto == "composed":
                    block.append(f"<b>{html.escape(query)}</b><br>")
            else:
                block.append(f"<b>{html.escape(query)}</b><br>")
            for system, lists in ex["results"].items():
                if qi >= len(lists):
                    continue
                block.append(f'<div><span class="sys">{html.escape(system)}</span>')
                for pid in lists[qi]:
                    p = corpus.products[corpus.pos_of[pid]]
                    block.append(_img_tag(_thumb(p.image_path) if p.image_path else None, p.title[:40]))
                block.append("</div>")
            block.append("</div>")
            out.append("".join(block))
    return "\n".join(out)


def write_report(result: dict, out: str | Path, *, corpus: Any = None) -> dict[str, Path]:
    """Write metrics.json, report.md and report.html into ``out`` (created); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "markdown": out / "report.md", "html": out / "report.html"}
    atomic_write_text(
        paths["metrics"], json.dumps(_clean(result), indent=2, sort_keys=False, allow_nan=False)
    )
    atomic_write_text(paths["markdown"], markdown(result))
    atomic_write_text(paths["html"], html_report(result, corpus))
    return paths
