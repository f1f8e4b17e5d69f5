"""PSI and Jensen-Shannon against numpy/scipy, and the warehouse binning against numpy's."""

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon

from ml import drift
from ml.monitor import bin_expression, current_fractions
from ml.warehouse import Warehouse


def _reference_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected, drift.EPSILON)
    a = np.maximum(actual, drift.EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def test_numeric_psi_and_js_equal_numpy_and_scipy() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, 5000)
    current = rng.normal(0.4, 1.3, 3000)
    current[:50] = np.nan
    bins = drift.numeric_bins("x", train)
    edges = np.array(bins.edges)

    # numpy reference: (lower, upper] bins via histogram on the same edges, NaN apart
    def shares(values: np.ndarray) -> np.ndarray:
        finite = values[~np.isnan(values)]
        counts = np.histogram(finite, bins=np.concatenate([[-np.inf], edges, [np.inf]]))[0]
        # np.histogram bins are [lower, upper); move values equal to an edge down a bin
        on_edge = np.isin(finite, edges)
        for value in finite[on_edge]:
            index = int(np.searchsorted(edges, value, side="left"))
            counts[index + 1] -= 1
            counts[index] += 1
        return np.concatenate([[np.isnan(values).sum()], counts]) / len(values)

    expected = drift.fractions(bins, drift.assign(bins, train))
    actual = drift.fractions(bins, drift.assign(bins, current))
    labels = bins.labels()
    np.testing.assert_allclose([expected[k] for k in labels], shares(train))
    np.testing.assert_allclose([actual[k] for k in labels], shares(current))
    assert drift.psi(expected, actual) == pytest.approx(
        _reference_psi(shares(train), shares(current))
    )
    assert drift.js_distance(expected, actual) == pytest.approx(
        jensenshannon(shares(train), shares(current), base=2)
    )
    assert drift.psi(expected, expected) == pytest.approx(0.0)
    assert drift.psi(expected, actual) > 0.1  # the shift is visible


def test_categorical_psi_and_js_equal_scipy() -> None:
    rng = np.random.default_rng(1)
    train = list(rng.choice(["a", "b", "c", None], p=[0.5, 0.3, 0.15, 0.05], size=4000))
    current = list(rng.choice(["a", "b", "d"], p=[0.2, 0.3, 0.5], size=4000))
    bins = drift.categorical_bins("colour", train)
    assert bins.categories == ("a", "b", "c")
    expected = drift.fractions(bins, drift.assign(bins, train))
    actual = drift.fractions(bins, drift.assign(bins, current))
    assert actual[drift.OTHER] == pytest.approx(current.count("d") / 4000)
    p = np.array([expected[k] for k in bins.labels()])
    q = np.array([actual[k] for k in bins.labels()])
    assert drift.psi(expected, actual) == pytest.approx(_reference_psi(p, q))
    assert drift.js_distance(expected, actual) == pytest.approx(jensenshannon(p, q, base=2))


def test_the_warehouse_bins_exactly_as_numpy_does(warehouse: Warehouse) -> None:
    rng = np.random.default_rng(2)
    values = np.round(rng.normal(size=2000), 1)  # many values fall on the edges
    train_bins = drift.numeric_bins("x", values[:1000])
    words = list(rng.choice(["a", "b", "c", "z"], size=2000))
    words[:7] = [None] * 7
    word_bins = drift.categorical_bins("w", words[:1000])
    table = pa.table({"x": pa.array([None, *values[1:]], pa.float64()), "w": words})
    warehouse.replace_table("t", table, schema="scratch")
    relation = warehouse.table("t", schema="scratch")
    in_sql, total = current_fractions(warehouse, relation, "x", train_bins)
    assert total == 2000
    in_numpy = drift.fractions(train_bins, drift.assign(train_bins, [np.nan, *values[1:]]))
    assert in_sql == pytest.approx(in_numpy)
    words_sql, _ = current_fractions(warehouse, relation, "w", word_bins)
    assert words_sql == pytest.approx(drift.fractions(word_bins, drift.assign(word_bins, words)))
    assert bin_expression(relation.x, train_bins).type().is_integer()


def test_reference_rows_round_trip() -> None:
    values = np.arange(100, dtype=float)
    bins = drift.numeric_bins("x", values)
    rows = drift.reference_rows(bins, drift.assign(bins, values))
    assert drift.bins_from_rows(rows) == bins
    assert sum(r["count"] for r in rows) == 100
    assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
