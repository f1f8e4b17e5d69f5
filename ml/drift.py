"""Reference distributions (fitted at training time) and drift measures between them and
what is scored later: population stability index and Jensen-Shannon distance.

The binning rules are the same here (numpy, for the training reference) and in the
warehouse (Ibis, in `ml.monitor`): numeric bins are (lower, upper], NULL has its own bin,
categories outside the reference's top ones are "(other)".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

MISSING = "(missing)"
OTHER = "(other)"
MISSING_BIN = -1
PREDICTION = "__prediction__"
TOP_CATEGORIES = 20
#: Stands in for an empty bin on either side, so PSI stays finite (a common convention).
EPSILON = 1e-4

REFERENCE_SCHEMA = pa.schema(
    [
        ("model_name", pa.string()),
        ("model_version", pa.int64()),
        ("variable", pa.string()),
        ("kind", pa.string()),
        ("bin", pa.int64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("category", pa.string()),
        ("count", pa.int64()),
        ("fraction", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Bins:
    """How one variable is binned: numeric upper edges, or the reference's categories."""

    variable: str
    kind: str  # "numeric" | "categorical"
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    def labels(self) -> list[Any]:
        """Bin keys in order: integers for numeric bins, strings for categories."""
        if self.kind == "numeric":
            return [MISSING_BIN, *range(len(self.edges) + 1)]
        return [*self.categories, OTHER, MISSING]


def numeric_bins(variable: str, values: np.ndarray, quantiles: int = 10) -> Bins:
    """Decile edges of the training values (duplicates dropped)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return Bins(variable, "numeric", ())
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, quantiles + 1)[1:-1]))
    return Bins(variable, "numeric", tuple(float(e) for e in edges))


def categorical_bins(variable: str, values: Sequence[Any]) -> Bins:
    present = pd.Series(values, dtype=object).dropna()
    top = present.value_counts(sort=True).index[:TOP_CATEGORIES]
    return Bins(variable, "categorical", categories=tuple(sorted(str(v) for v in top)))


def assign(bins: Bins, values: Sequence[Any] | np.ndarray) -> list[Any]:
    """The bin key of every value (the numpy twin of the warehouse's CASE expression)."""
    if bins.kind == "numeric":
        array = np.asarray(values, dtype=float)
        index = np.searchsorted(np.asarray(bins.edges), array, side="left")
        return [MISSING_BIN if np.isnan(v) else int(i) for v, i in zip(array, index, strict=True)]
    known = set(bins.categories)
    return [
        MISSING
        if v is None or (isinstance(v, float) and np.isnan(v))
        else str(v)
        if str(v) in known
        else OTHER
        for v in values
    ]


def fractions(bins: Bins, keys: Sequence[Any]) -> dict[Any, float]:
    """Share of values per bin key (every key of ``bins``, zeros included)."""
    total = len(keys)
    counts = {label: 0 for label in bins.labels()}
    for key in keys:
        counts[key] += 1
    return {label: (count / total if total else 0.0) for label, count in counts.items()}


def psi(reference: dict[Any, float], current: dict[Any, float]) -> float:
    """Population stability index: sum of (current - reference) * ln(current / reference)."""
    total = 0.0
    for key in reference.keys() | current.keys():
        ref = max(reference.get(key, 0.0), EPSILON)
        cur = max(current.get(key, 0.0), EPSILON)
        total += (cur - ref) * np.log(cur / ref)
    return float(total)


def js_distance(reference: dict[Any, float], current: dict[Any, float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two binned distributions."""
    keys = sorted(reference.keys() | current.keys(), key=str)
    p = np.array([reference.get(k, 0.0) for k in keys])
    q = np.array([current.get(k, 0.0) for k in keys])
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return float(np.sqrt(max((kl(p, m) + kl(q, m)) / 2, 0.0)))


def reference_rows(bins: Bins, keys: Sequence[Any]) -> list[dict[str, Any]]:
    """Rows of ``ml.model_reference_stats`` for one variable."""
    shares = fractions(bins, keys)
    counts = Counter(keys)
    rows = []
    for position, label in enumerate(bins.labels()):
        row: dict[str, Any] = {
            "variable": bins.variable,
            "kind": bins.kind,
            "fraction": shares[label],
            "count": counts[label],
        }
        if bins.kind == "numeric":
            index = int(label)
            row |= {
                "bin": index,
                "lower": None if index <= 0 else bins.edges[index - 1],
                "upper": None if index < 0 or index >= len(bins.edges) else bins.edges[index],
                "category": None,
            }
        else:
            row |= {"bin": position, "lower": None, "upper": None, "category": label}
        rows.append(row)
    return rows


def bins_from_rows(rows: list[dict[str, Any]]) -> Bins:
    """Rebuild the binning of one variable from its reference rows."""
    variable, kind = rows[0]["variable"], rows[0]["kind"]
    if kind == "numeric":
        edges = sorted({r["upper"] for r in rows if r["upper"] is not None})
        return Bins(variable, kind, tuple(edges))
    categories = sorted(r["category"] for r in rows if r["category"] not in {OTHER, MISSING})
    return Bins(variable, kind, categories=tuple(categories))


def reference_fractions(rows: list[dict[str, Any]]) -> dict[Any, float]:
    key = "bin" if rows[0]["kind"] == "numeric" else "category"
    return {r[key]: r["fraction"] for r in rows}
