"""`ml report`: a self-contained HTML page per model version, read from the registry tables.

Plots are drawn with matplotlib's object API (no pyplot) and embedded as PNG data URIs,
so the page opens without network access.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ml.errors import MLError
from ml.registry import ModelVersion, Registry
from ml.spec import MonitorSpec

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.3em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.card td{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figure img{max-width:520px;border:1px solid #eee}
.better{color:#11772d}.worse{color:#b3261e}.muted{color:#666}
"""


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    # Figure without pyplot: no global state, no display backend to choose.
    figure = Figure(figsize=(6.0, 4.2))
    axes = figure.subplots()
    axes.set_title(title, fontsize=12)
    axes.set_xlabel(xlabel, fontsize=10)
    axes.set_ylabel(ylabel, fontsize=10)
    axes.grid(alpha=0.3)
    return figure, axes


def _rows(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def roc_plot(curves: list[dict[str, Any]]) -> Figure | None:
    return _curve_plot(
        curves, "roc", "ROC curve", "false positive rate", "true positive rate", diagonal="chance"
    )


def pr_plot(curves: list[dict[str, Any]]) -> Figure | None:
    return _curve_plot(curves, "pr", "Precision-recall curve", "recall", "precision")


def calibration_plot(curves: list[dict[str, Any]]) -> Figure | None:
    return _curve_plot(
        curves,
        "calibration",
        "Calibration (test split)",
        "mean predicted probability",
        "observed fraction positive",
        diagonal="perfectly calibrated",
        splits=("test",),
        marker="o",
    )


def _curve_plot(
    curves: list[dict[str, Any]],
    kind: str,
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    diagonal: str | None = None,
    splits: tuple[str, ...] = ("valid", "test"),
    marker: str | None = None,
) -> Figure | None:
    selected = _rows(curves, curve=kind)
    if not selected:
        return None
    figure, axes = _figure(title, xlabel, ylabel)
    for split in splits:
        for label in sorted({r["class_label"] for r in selected}):
            points = sorted(
                _rows(selected, split=split, class_label=label), key=lambda r: r["point"]
            )
            if not points:
                continue
            x = [p["x"] for p in points]
            y = [p["y"] for p in points]
            area = float(np.trapezoid(y, x)) if kind != "calibration" else None
            name = f"{split}, class {label}" + (f" (area {area:.3f})" if area is not None else "")
            axes.plot(x, y, marker=marker, label=name)
    if diagonal:
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label=diagonal)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=8)
    return figure


def confusion_plot(rows: list[dict[str, Any]], kind: str) -> Figure | None:
    selected = _rows(rows, split="test", threshold_kind=kind)
    if not selected:
        return None
    labels = sorted({r["actual_class"] for r in selected})
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for r in selected:
        matrix[labels.index(r["actual_class"]), labels.index(r["predicted_class"])] = r["count"]
    threshold = selected[0]["threshold"]
    suffix = "" if threshold is None else f", threshold {threshold:.3f}"
    figure, axes = _figure(
        f"Confusion matrix (test, {kind}{suffix})", "predicted class", "actual class"
    )
    axes.grid(False)
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            axes.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center", color=colour)
    return figure


def learning_curve_plot(rows: list[dict[str, Any]]) -> Figure | None:
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r["train_size"])
    metric = rows[0]["metric"]
    figure, axes = _figure("Learning curve", "training rows", metric)
    sizes = [r["train_size"] for r in rows]
    for prefix, name in (("train", "training score"), ("cv", "cross-validated score")):
        mean = np.array([r[f"{prefix}_score_mean"] for r in rows])
        std = np.array([r[f"{prefix}_score_std"] for r in rows])
        axes.plot(sizes, mean, marker="o", label=name)
        axes.fill_between(sizes, mean - std, mean + std, alpha=0.2)
    axes.legend(fontsize=9)
    return figure


def importance_plot(rows: list[dict[str, Any]], top: int = 15) -> Figure | None:
    selected = sorted(_rows(rows, kind="permutation"), key=lambda r: r["rank"])[:top]
    if not selected:
        return None
    figure, axes = _figure(
        "Permutation importance (validation split)",
        "drop in score when the feature is shuffled",
        "",
    )
    names = [r["feature"] for r in selected][::-1]
    values = [r["importance"] for r in selected][::-1]
    errors = [r["importance_std"] or 0 for r in selected][::-1]
    axes.barh(names, values, xerr=errors, color="#4c72b0")
    axes.tick_params(axis="y", labelsize=8)
    return figure


def search_plot(trials: list[dict[str, Any]]) -> Figure | None:
    if not trials:
        return None
    metric = trials[0]["metric"]
    figure, axes = _figure("Search results (cross-validation)", "trial", f"mean CV {metric}")
    algorithms = sorted({t["algorithm"] for t in trials})
    position = 0
    for algorithm in algorithms:
        own = sorted(_rows(trials, algorithm=algorithm), key=lambda t: t["trial"])
        x = list(range(position, position + len(own)))
        axes.errorbar(
            x,
            [t["mean_cv_score"] for t in own],
            yerr=[t["std_cv_score"] for t in own],
            fmt="o",
            capsize=3,
            label=algorithm,
        )
        chosen = [i for i, t in zip(x, own, strict=True) if t["is_selected"]]
        if chosen:
            axes.scatter(
                chosen,
                [own[x.index(c)]["mean_cv_score"] for c in chosen],
                s=160,
                facecolors="none",
                edgecolors="black",
                label="selected",
            )
        position += len(own) + 1
    axes.legend(fontsize=8)
    return figure


def prediction_bins_plot(rows: list[dict[str, Any]]) -> Figure | None:
    selected = sorted(_rows(rows, split="test"), key=lambda r: r["bin"])
    if not selected:
        return None
    figure, axes = _figure(
        "Predicted versus actual (test, deciles of prediction)", "mean prediction", "mean actual"
    )
    x = [r["predicted_mean"] for r in selected]
    y = [r["actual_mean"] for r in selected]
    axes.plot(x, y, marker="o", label="decile")
    low, high = min(x + y), max(x + y)
    axes.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect")
    axes.legend(fontsize=9)
    return figure


def cluster_plot(rows: list[dict[str, Any]]) -> Figure | None:
    if not rows:
        return None
    clusters = sorted({r["cluster"] for r in rows})
    features = sorted({r["feature"] for r in rows})
    figure, axes = _figure(
        "Cluster profiles (feature mean / overall mean)", "feature", "cluster (size)"
    )
    axes.grid(False)
    ratio = np.zeros((len(clusters), len(features)))
    sizes = {}
    for r in rows:
        overall = r["overall_mean"] or 1e-12
        ratio[clusters.index(r["cluster"]), features.index(r["feature"])] = r["mean"] / overall
        sizes[r["cluster"]] = r["size"]
    image = axes.imshow(ratio, cmap="RdBu_r", vmin=0, vmax=2, aspect="auto")
    axes.set_xticks(range(len(features)), features, rotation=35, ha="right", fontsize=8)
    axes.set_yticks(range(len(clusters)), [f"{c} ({sizes[c]:,})" for c in clusters])
    figure.colorbar(image, ax=axes, label="ratio to overall mean")
    return figure


def drift_plot(
    drift_rows: list[dict[str, Any]], runs: list[dict[str, Any]], thresholds: dict[str, float]
) -> Figure | None:
    """PSI of the most drifting variables per scoring run, with the alert thresholds."""
    if not drift_rows or not runs:
        return None
    order = {r["scoring_run_id"]: r["scored_at"] for r in runs}
    worst = sorted(
        {r["variable"] for r in drift_rows},
        key=lambda v: -max(r["psi"] for r in drift_rows if r["variable"] == v),
    )[:5]
    figure, axes = _figure(
        "Drift over time (PSI against training)",
        "scoring run (scored at)",
        "population stability index",
    )
    for variable in worst:
        points = sorted(
            (order[r["scoring_run_id"]], r["psi"])
            for r in drift_rows
            if r["variable"] == variable and r["scoring_run_id"] in order
        )
        if points:
            label = "prediction" if variable == "__prediction__" else variable
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axes.axhline(thresholds["psi_warn"], color="orange", linestyle="--", label="warn")
    axes.axhline(thresholds["psi_alert"], color="red", linestyle="--", label="alert")
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure


def performance_plot(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> Figure | None:
    """Realised metric per scoring run, beside the test score at training."""
    order = {r["scoring_run_id"]: r["scored_at"] for r in runs}
    points = sorted(
        (order[r["scoring_run_id"]], r["value"], r["training_test_value"])
        for r in rows
        if r["scoring_run_id"] in order
    )
    if not points:
        return None
    metric = rows[0]["metric"]
    figure, axes = _figure("Realised performance over time", "scoring run (scored at)", metric)
    axes.plot(
        [p[0] for p in points],
        [p[1] for p in points],
        marker="o",
        label="realised (outcomes arrived)",
    )
    axes.plot(
        [p[0] for p in points],
        [p[2] for p in points],
        linestyle="--",
        color="grey",
        label="test score at training",
    )
    axes.legend(fontsize=8)
    figure.autofmt_xdate()
    return figure


def _table(header: list[str], body: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f'<table class="{css}"><tr>{head}</tr>{rows}</table>'


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:,.4f}"


def render(
    registry: Registry,
    model_name: str,
    version: ModelVersion,
    *,
    label: str,
    description: str | None,
) -> str:
    """The HTML page of one model version."""
    row = version.row
    number = version.version

    def rows(table: str) -> list[dict[str, Any]]:
        return [r for r in registry.evaluation(table, model_name) if r["model_version"] == number]

    status = registry.status(model_name)
    spec = json.loads(row["spec"])
    card = [
        ["predicts", html.escape(spec.get("target") or "clusters (no target)")],
        ["task", row["task"]],
        [
            "training data",
            f"{html.escape(row['training_relation'])}, fingerprint "
            f"<code>{row['data_fingerprint'][:16]}</code>",
        ],
        [
            "split",
            f"{spec['split']['method']}: train {row['rows_train']:,} / valid "
            f"{row['rows_valid']:,} / test {row['rows_test']:,} rows",
        ],
        ["algorithm", f"{row['algorithm']} <code>{html.escape(row['params'])}</code>"],
        ["selected by", f"{row['metric']} on the validation split"],
        ["status", status.get(number, "?")],
        ["seed", str(row["seed"])],
        ["trained", f"{row['created_at']:%Y-%m-%d %H:%M} UTC in {row['training_seconds']:.0f} s"],
        [
            "libraries",
            html.escape(
                ", ".join(f"{k} {v}" for k, v in json.loads(row["library_versions"]).items())
            ),
        ],
    ]
    metrics = rows("model_metrics")
    names = sorted({m["metric"] for m in metrics if not m["metric"].startswith("size_")})
    metric_rows = []
    for name in names:
        cells = [name]
        for split in ("train", "valid", "test"):
            match = _rows(metrics, split=split, metric=name)
            value = match[0]["value"] if match else None
            baseline = match[0]["baseline_value"] if match else None
            cells.append(
                _number(value)
                + (
                    f' <span class="muted">({_number(baseline)})</span>'
                    if baseline is not None
                    else ""
                )
            )
        metric_rows.append(cells)
    comparison = _comparison(registry, model_name, version)
    curves, confusion = rows("model_curves"), rows("model_confusion_matrix")
    monitoring_runs = registry.evaluation("monitoring_runs", model_name)
    figures = [
        roc_plot(curves),
        pr_plot(curves),
        confusion_plot(confusion, "default"),
        *[
            confusion_plot(confusion, kind)
            for kind in sorted({r["threshold_kind"] for r in confusion} - {"default"})
        ],
        calibration_plot(curves),
        learning_curve_plot(rows("model_learning_curve")),
        importance_plot(rows("model_feature_importance")),
        search_plot(rows("model_search_trials")),
        prediction_bins_plot(rows("model_prediction_bins")),
        cluster_plot(rows("model_cluster_profiles")),
        drift_plot(
            registry.evaluation("monitoring_drift", model_name),
            monitoring_runs,
            spec.get("monitor") or MonitorSpec().model_dump(),
        ),
        performance_plot(
            registry.evaluation("monitoring_performance", model_name), monitoring_runs
        ),
    ]
    images = "".join(
        f'<figure><img alt="{html.escape(str(f.axes[0].get_title()))}" '
        f'src="data:image/png;base64,{_png(f)}"></figure>'
        for f in figures
        if f is not None
    )
    residuals = rows("model_residuals")
    residual_html = ""
    if residuals:
        value = {(r["statistic"], r["split"]): r["value"] for r in residuals}
        residual_html = "<h2>Residuals (actual - predicted)</h2>" + _table(
            ["statistic", "train", "valid", "test"],
            [
                [s, *[_number(value.get((s, split))) for split in ("train", "valid", "test")]]
                for s in sorted({r["statistic"] for r in residuals})
            ],
        )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(model_name)} v{number}: model report</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(label)}</h1>
<p class="muted">{html.escape(model_name)} version {number} · generated {generated}</p>
{f"<p>{html.escape(description)}</p>" if description else ""}
<h2>Model card</h2>{_table(["", ""], card, "card")}
<h2>Metrics</h2>
<p class="muted">Baseline in brackets: {
        "majority class with class priors"
        if row["task"] == "classification"
        else "the training mean"
        if row["task"] == "regression"
        else "none"
    }.</p>
{_table(["metric", "train", "valid", "test"], metric_rows)}
{comparison}
{residual_html}
<h2>Plots</h2><div class="plots">{images}</div>
</body></html>
"""


def _comparison(registry: Registry, model_name: str, version: ModelVersion) -> str:
    """Test metrics beside those of the previous champion, when there is one."""
    history = [
        r["model_version"]
        for r in registry.champion_history(model_name)
        if r["model_version"] != version.version
    ]
    earlier = [v for v in history if v < version.version] or history
    if not earlier:
        return ""
    previous = registry.version(model_name, earlier[-1])
    mine = registry.test_metrics(model_name, version.version)
    theirs = registry.test_metrics(model_name, previous.version)
    body = []
    for name in sorted(set(mine) & set(theirs)):
        if name.startswith("size_"):
            continue
        delta = mine[name] - theirs[name]
        body.append([name, _number(theirs[name]), _number(mine[name]), f"{delta:+.4f}"])
    return (
        f"<h2>Compared with champion v{previous.version} ({previous.algorithm})</h2>"
        '<p class="muted">Each version\'s metrics on its own test split.</p>'
        + _table(["metric", f"v{previous.version}", f"v{version.version}", "change"], body)
    )


def write_report(
    registry: Registry,
    model_name: str,
    *,
    version: int | None,
    label: str,
    description: str | None,
    directory: Path,
    progress: Callable[[str], None] = print,
) -> Path:
    """Write the report of ``version`` (default: the champion); return its path."""
    chosen = registry.version(model_name, version) if version else registry.champion(model_name)
    if chosen is None:
        raise MLError(
            f"model {model_name} has no champion to report on",
            hint=f"train it first: ml train {model_name}",
        )
    page = render(registry, model_name, chosen, label=label, description=description)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model_name}-v{chosen.version}.html"
    partial = path.with_suffix(".html.partial")
    partial.write_text(page)
    partial.replace(path)
    progress(f"{model_name}: report {path}")
    return path
