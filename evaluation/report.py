"""The evaluation report on disk: ``report.json`` (the typed report, ``evaluation.findings``) and one HTML
page with its plots, both logged to MLflow."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no screen: draw to memory
import matplotlib.pyplot as plt

from evaluation.findings import EvaluationReport
from triage.cards import Metric


def _png(figure: Any) -> str:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(out.getvalue()).decode()


def _roc(found: EvaluationReport) -> Any:
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([p.false_positive_rate for p in found.roc], [p.sensitivity for p in found.roc])
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    for name, point in found.operating_points.items():
        if point.sensitivity is not None and point.specificity is not None:
            sens, spec = point.sensitivity.value, point.specificity.value
            axes.plot(1 - spec, sens, "o")
            axes.annotate(
                f"{name} (t={point.threshold:.3f}): sens {sens:.2f}, spec {spec:.2f}",
                (1 - spec, sens), textcoords="offset points", xytext=(8, -12), fontsize=8,
            )  # fmt: skip
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (exams) with the operating points")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    return figure


def _froc(found: EvaluationReport) -> Any:
    figure, axes = plt.subplots(figsize=(6, 4))
    assert found.boxes is not None
    froc = found.boxes.froc
    rates = [p.false_positives_per_image for p in froc]
    axes.semilogx(rates, [p.sensitivity for p in froc], "o-")
    axes.set_xticks(rates)
    axes.set_xticklabels([f"{r:g}" for r in rates])
    axes.minorticks_off()
    axes.set_ylim(0, 1.02)
    axes.set(xlabel="false positives per image", ylabel="lesion sensitivity (IoU >= 0.5)", title="FROC")
    return figure


def _histogram(found: EvaluationReport) -> Any:
    figure, axes = plt.subplots(figsize=(6, 3.5))
    counts = found.distribution
    edges = np.linspace(0, 1, len(counts.positive) + 1)
    width = edges[1] - edges[0]
    axes.bar(edges[:-1], counts.negative, width=width, align="edge", alpha=0.6, label="negative")
    axes.bar(edges[:-1], counts.positive, width=width, align="edge", alpha=0.6, label="positive")
    for name, point in found.operating_points.items():
        if 0 <= point.threshold <= 1:
            axes.axvline(point.threshold, linestyle="--", color="black", linewidth=0.8)
            axes.text(point.threshold, axes.get_ylim()[1] * 0.9, f" {name}", fontsize=8)
    axes.set(xlabel="exam probability", ylabel="exams", title="Scores by label")
    axes.legend()
    return figure


def plots(found: EvaluationReport) -> dict[str, str]:
    """ROC with the operating points, calibration, the score histogram per label, and (when there are
    boxes / 1-10 scores) FROC and the share of exams per score, as PNG."""
    images = {"roc": _png(_roc(found))}
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    bins = found.calibration
    axes.plot([b.mean_probability for b in bins], [b.observed_rate for b in bins], "o-")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration")
    images["calibration"] = _png(figure)
    images["scores by label"] = _png(_histogram(found))
    if found.boxes is not None:
        images["froc"] = _png(_froc(found))
    if found.scores:
        figure, axes = plt.subplots(figsize=(5, 3))
        shares = found.scores
        axes.bar(list(shares), [share.share for share in shares.values()])
        axes.set_xticks(range(1, 11))
        axes.set(xlabel="score", ylabel="share of exams", title="1-10 score")
        images["scores"] = _png(figure)
    return images


def _workload(found: EvaluationReport) -> str:
    """The screening workload for every single-reading threshold, as a table."""
    if not found.workload:
        return ""
    head = (
        "<h2>Screening workload</h2><table><tr><th>single read at score &le;</th><th>share single read</th>"
        "<th>reads per 1,000 exams</th><th>cancers in the single-read arm</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{w.single_read_max_score}</td><td>{w.single_read_share:.0%}</td>"
        f"<td>{w.reads_per_1000_exams:.0f}</td>"
        f"<td>{w.cancers_in_single_read_arm} of {w.cancers}</td></tr>"
        for w in found.workload
    )
    return head + rows + "</table>"


def _skipped(found: EvaluationReport) -> str:
    reasons = found.dataset.skipped
    if not reasons:
        return ""
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    return f"<h2>Images skipped ({len(reasons)})</h2><ul>{items}</ul>"


def _with_interval(metric: Metric | None) -> str:
    if metric is None:
        return "-"
    return f"{metric.value:.3f} ({metric.ci95_low:.3f}-{metric.ci95_high:.3f}, n={metric.n})"


def _rows(found: EvaluationReport) -> str:
    lines = []
    for name, point in found.operating_points.items():
        cells = [html.escape(name), f"{point.threshold:.4f}"]
        cells += [_with_interval(m) for m in (point.sensitivity, point.specificity, point.ppv, point.npv)]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(lines)


def write(found: EvaluationReport, folder: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    found.write_json(json_path)
    model, dataset = found.model, found.dataset
    auroc = found.exam_auroc
    headline = (
        f"{auroc.value:.3f} (95% CI {auroc.ci95_low:.3f}-{auroc.ci95_high:.3f})"
        if auroc is not None
        else "not defined (one class only)"
    )
    calibration = (
        f"expected calibration error {_with_interval(found.calibration_error)} (10 bins; 0 when the output "
        "behaves as a probability)"
    )
    pictures = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>"
        for name, data in plots(found).items()
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>triage evaluation: {html.escape(model.name)} {html.escape(model.version)}</title>
<style>body{{font-family:sans-serif;margin:2rem}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:0 1rem 1rem 0}}</style></head><body>
<h1>{html.escape(model.name)} {html.escape(model.version)} ({html.escape(model.pipeline)})</h1>
<p>Manifest {html.escape(dataset.manifest)} (sha256 {dataset.sha256[:16]}): {dataset.images} images,
{dataset.exams} exams, {dataset.positive_exams} positive, {dataset.skipped_images} images
skipped as unreadable. Exam AUROC {headline}; Brier {found.brier:.4f}; {calibration}.</p>
<h2>Operating points</h2><table><tr><th>point</th><th>threshold</th><th>sensitivity</th><th>specificity</th>
<th>PPV</th><th>NPV</th></tr>{_rows(found)}</table>
{_workload(found)}
<h2>Plots</h2>{pictures}
{_skipped(found)}
<p>Every figure, subgroups included, is in report.json.</p></body></html>"""
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path
