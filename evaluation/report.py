"""The evaluation report: a JSON of every figure and one HTML page with the plots, logged to MLflow."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: draw to memory
import matplotlib.pyplot as plt


def _png(figure: Any) -> str:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(out.getvalue()).decode()


def plots(found: dict[str, Any]) -> dict[str, str]:
    """ROC, calibration, and (when there are boxes / scores) FROC and the score histogram, as PNG."""
    images = {}
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot([p["false_positive_rate"] for p in found["roc"]], [p["sensitivity"] for p in found["roc"]])
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    for name, point in found["operating_points"].items():
        sens, spec = point["sensitivity"]["value"], point["specificity"]["value"]
        if sens is not None and spec is not None:
            axes.plot(1 - spec, sens, "o", label=name)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (exams)")
    axes.legend(loc="lower right")
    images["roc"] = _png(figure)
    figure, axes = plt.subplots(figsize=(4, 4))
    bins = found["calibration"]
    axes.plot([b["mean_probability"] for b in bins], [b["observed_rate"] for b in bins], "o-")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration")
    images["calibration"] = _png(figure)
    if "boxes" in found:
        figure, axes = plt.subplots(figsize=(4, 4))
        froc = found["boxes"]["froc"]
        axes.semilogx([p["false_positives_per_image"] for p in froc], [p["sensitivity"] for p in froc], "o-")
        axes.set(xlabel="false positives per image", ylabel="lesion sensitivity", title="FROC")
        images["froc"] = _png(figure)
    if "scores" in found:
        figure, axes = plt.subplots(figsize=(5, 3))
        shares = found["scores"]
        axes.bar([int(s) for s in shares], [shares[s]["share"] for s in shares])
        axes.set(xlabel="score", ylabel="share of exams", title="1-10 score")
        images["scores"] = _png(figure)
    return images


def _rows(found: dict[str, Any]) -> str:
    lines = []
    for name, point in found["operating_points"].items():
        cells = [html.escape(name), f"{point['threshold']:.4f}"]
        for measure in ("sensitivity", "specificity", "ppv", "npv"):
            value = point[measure]
            cells.append(
                "-"
                if value["value"] is None
                else f"{value['value']:.3f} ({value['ci95_low']:.3f}-{value['ci95_high']:.3f}, "
                f"n={value['n']})"
            )
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(lines)


def write(found: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(found, indent=2, default=str), encoding="utf-8")
    model, dataset = found["model"], found["dataset"]
    auroc = found["exam_auroc"]
    headline = (
        f"{auroc['value']:.3f} (95% CI {auroc['ci95_low']:.3f}-{auroc['ci95_high']:.3f})"
        if auroc.get("value") is not None
        else "not defined (one class only)"
    )
    pictures = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>"
        for name, data in plots(found).items()
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>triage evaluation: {html.escape(model["name"])} {html.escape(model["version"])}</title>
<style>body{{font-family:sans-serif;margin:2rem}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:0 1rem 1rem 0}}</style></head><body>
<h1>{html.escape(model["name"])} {html.escape(model["version"])} ({html.escape(model["pipeline"])})</h1>
<p>Manifest {html.escape(dataset["manifest"])} (sha256 {dataset["sha256"][:16]}): {dataset["images"]} images,
{dataset["exams"]} exams, {dataset["positive_exams"]} positive. Exam AUROC {headline}; Brier
{found["brier"]:.4f}; expected calibration error {found["expected_calibration_error"]:.4f}.</p>
<h2>Operating points</h2><table><tr><th>point</th><th>threshold</th><th>sensitivity</th><th>specificity</th>
<th>PPV</th><th>NPV</th></tr>{_rows(found)}</table>
<h2>Plots</h2>{pictures}
<p>Every figure, subgroups included, is in report.json.</p></body></html>"""
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path
