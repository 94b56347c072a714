"""debug.json, debug.md and the PNGs (matplotlib, Agg) of a trace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import FpgagenError


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _json_default(value):
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def write_report(trace, out_dir: Path, plots: bool = True) -> dict:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FpgagenError(f"cannot create the report folder ({exc.strerror})", str(out_dir),
                           "pass a writable -o folder") from None
    doc = trace.summary()
    if plots:
        doc["images"] = {**write_plots(trace, doc, out_dir), **trace.images}
    _atomic_write(out_dir / "debug.json", json.dumps(doc, indent=1, default=_json_default) + "\n")
    _atomic_write(out_dir / "debug.md", markdown(doc))
    return doc


def _fmt_index(index) -> str:
    return "-" if index is None else "(" + ", ".join(map(str, index)) + ")"


def _effect_text(effect: dict | None) -> str:
    if not effect:
        return "-"
    text = f"{effect['differing_codes']:,}" + (f" of {effect['of']:,}" if "of" in effect else "") + \
        " output codes differ" + (f" (max \\|Δ\\| {effect['max_abs_diff']})" if effect.get("max_abs_diff") else "")
    if "detections_gained" in effect:
        text += (f"; detections {effect['detections_reference']} -> {effect['detections']} "
                 f"(+{effect['detections_gained']} −{effect['detections_lost']}, IoU ≥ 0.5)")
    return text


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def markdown(doc: dict) -> str:
    lines = [f"# fpgagen debug: {doc['network']}", "",
             f"Build `{doc['build']}`, {doc['frames']} frame(s); sources: {', '.join(doc['sources'])}.", ""]
    first = doc["first_divergence"]
    if first:
        lines += [f"**First divergence: layer `{first['layer']}` ({first['kind']})**, {first['a']} vs {first['b']}: "
                  f"{first['differing']:,} codes differ, max |Δ| {first['max_abs_diff']}, first at (n, c, h, w) "
                  f"{_fmt_index(first['index'])}.", ""]
    else:
        lines += ["**Every source agrees on every tapped stream** (float32 k − ½ boundary cases aside)." if
                  len(doc["sources"]) > 1 else "Only one source was run: nothing to compare.", ""]
    for b in doc["float32_boundary_cases"]:
        lines.append(f"- `{b['layer']}`: {b['a']} vs {b['b']} differ in {b['differing']} code(s), all float32 "
                     "k − ½ rounding boundary cases (not a bug)")
    for w in doc["warnings"]:
        lines.append(f"- warning: {w}")
    for p in doc["problems"]:
        lines.append(f"- problem: {p}")
    if doc["float32_boundary_cases"] or doc["warnings"] or doc["problems"]:
        lines.append("")
    lines += ["## Layers", "",
              "| layer | kind | shape (h, w, c) | compared | differing | max \\|Δ\\| | first (n, c, h, w) | clip low | "
              "clip high | unused codes | dead ch. | SQNR dB (own float / float twin) |",
              "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for e in doc["layers"]:
        cmp = [c for c in e["comparisons"] if c["differing"]] or e["comparisons"]
        compared = ", ".join(f"{c['a']}/{c['b']}" for c in e["comparisons"]) or "-"
        none = e.get("no_counterpart", {})
        if none:
            compared += " (no counterpart in " + ", ".join(none) + ")"
        first_index = _fmt_index(cmp[0]["first_index"]) if cmp else "-"
        unused = f"{e['unused_codes']}/{e['codes']}" if "unused_codes" in e else "-"
        dead = len(e.get("dead_channels", []))
        sqnr = f"{e['sqnr_db']:.1f}" if "sqnr_db" in e else "-"
        if "sqnr_float_db" in e:
            sqnr += f" / {e['sqnr_float_db']:.1f}"
        lines.append(f"| `{e['name']}` | {e['kind']} | {'x'.join(map(str, e['shape']))} | {compared} | "
                     f"{e['differing']:,} | {e['max_abs_diff']} | {first_index} | {e.get('clip_low', 0):.3f} | "
                     f"{e.get('clip_high', 0):.3f} | {unused} | {dead} | {sqnr} |")
    lines.append("")
    no_cp = [(e["name"], k, v) for e in doc["layers"] for k, v in e.get("no_counterpart", {}).items()]
    if no_cp:
        lines += ["No counterpart (not compared, not guessed):", ""]
        lines += [f"- `{name}` in {src}: {why}" for name, src, why in no_cp]
        lines.append("")
    if doc["quant_flags"]:
        lines += ["## Quantization health flags", ""]
        lines += [f"- `{f['layer']}`: " + "; ".join(f["flags"]) for f in doc["quant_flags"]]
        lines.append("")
    for title, key in (("Pre-processing checks", "preprocess_checks"), ("Post-processing checks",
                                                                         "postprocess_checks")):
        if doc[key]:
            lines += [f"## {title}", "", "| check | ok | detail | effect |", "|---|---|---|---|"]
            for c in doc[key]:
                lines.append(f"| {c['check']} | {'yes' if c['ok'] else '**no**'} | {_cell(c['detail'])} | "
                             f"{_effect_text(c.get('effect'))} |")
            lines.append("")
            if key == "preprocess_checks" and doc.get("deployed_effect"):
                lines += ["The deployed frame itself, against the reference frame: "
                          f"{_effect_text(doc['deployed_effect'])}.", ""]
    if doc.get("images"):
        lines += ["## Plots", ""] + [f"![{k}]({v})" for k, v in doc["images"].items()] + [""]
    return "\n".join(lines)


def write_plots(trace, doc: dict, out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = {}
    layers = doc["layers"]
    names = [e["name"] for e in layers]
    pairs = sorted({(c["a"], c["b"]) for e in layers for c in e["comparisons"]})
    if pairs:
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 3.6))
        for a, b in pairs:
            ys = [next((c["differing"] for c in e["comparisons"] if (c["a"], c["b"]) == (a, b)), np.nan)
                  for e in layers]
            ax.plot(range(len(names)), [y + 0.5 if y == y else y for y in ys], marker="o", label=f"{a} vs {b}")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("differing codes (+0.5)")
        ax.set_title("codes that differ, per tapped stream")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "differences.png", dpi=90)
        plt.close(fig)
        images["differences"] = "differences.png"
    base = trace.sources.get("reference", trace.sources.get("csim", {}))
    shown = [t for t in trace.taps if t.key in base and t.quantizes]
    if shown:
        cols = 4
        rows = (len(shown) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(12, 2.1 * rows), squeeze=False)
        for ax, tap in zip(axes.flat, shown, strict=False):
            codes = base[tap.key].reshape(-1)
            lo, hi = int(codes.min()), int(codes.max())
            edges = np.arange(lo, hi + 2) - 0.5 if hi - lo <= 512 else np.linspace(lo, hi, 65)
            counts, edges = np.histogram(codes, bins=edges)
            ax.stairs(counts, edges, fill=True, color="tab:blue")  # one patch, not one per bin
            ax.axvline(tap.lo, color="tab:red", lw=0.8)
            ax.axvline(tap.hi, color="tab:red", lw=0.8)
            ax.set_title(f"{tap.name} [{tap.lo}, {tap.hi}]", fontsize=8)
            ax.tick_params(labelsize=6)
        for ax in list(axes.flat)[len(shown):]:
            ax.axis("off")
        fig.suptitle("codes of every quantizing layer (red: the range's ends, where codes clip)", fontsize=9)
        fig.subplots_adjust(hspace=0.6, wspace=0.25, top=1 - 0.35 / rows)
        fig.savefig(out_dir / "histograms.png", dpi=80)
        plt.close(fig)
        images["histograms"] = "histograms.png"
    first = doc["first_divergence"]
    if first:
        tap = next(t for t in trace.taps if t.name == first["layer"])
        a, b = trace.sources[first["a"]][tap.key], trace.sources[first["b"]][tap.key]
        n = first["index"][0] if first["index"] else 0
        delta = np.abs(a[n].astype(np.int64) - b[n]).sum(axis=-1)
        fig, ax = plt.subplots(figsize=(4.5, 4))
        im = ax.imshow(delta, cmap="magma")
        fig.colorbar(im, ax=ax)
        ax.set_title(f"{first['layer']}: Σ_c |{first['a']} − {first['b']}|, frame {n}", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "first_divergence.png", dpi=90)
        plt.close(fig)
        images["first_divergence"] = "first_divergence.png"
    return images


def write_frames_plot(out_dir: Path, reference: np.ndarray, deployed: np.ndarray) -> str:
    """preprocess.png: fpgagen's reference frame, the deployed frame (its first) and |difference| summed over the
    channels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    got = np.asarray(deployed)
    got = (got[0] if got.ndim == 4 else got).astype(np.float64)
    shown = np.clip(got * (255 if got.max() <= 1.0 else 1), 0, 255).astype(np.uint8)  # a 0-1 frame, visible
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    axes[0].imshow(reference)
    axes[0].set_title("fpgagen's reference frame", fontsize=8)
    axes[1].imshow(shown)
    axes[1].set_title("deployed frame", fontsize=8)
    im = axes[2].imshow(np.abs(got - reference.astype(np.float64)).sum(axis=2), cmap="magma")
    axes[2].set_title("Σ_c |deployed − reference|", fontsize=8)
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.savefig(out_dir / "preprocess.png", dpi=80)
    plt.close(fig)
    return "preprocess.png"
