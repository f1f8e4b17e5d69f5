"""Benchmark: batch scoring streams, so its memory does not grow with the row count.

Scores the same model over a small and a 10x larger relation, each in its own process,
and prints peak resident memory and throughput side by side, with their ratios.

    .venv/bin/python bench/scoring_memory.py [--rows 200000] [--factor 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ml.dbt import Target
from ml.registry import Registry
from ml.score import score_model
from ml.spec import MLModel, Relation, parse_spec
from ml.train import train_model
from ml.warehouse import Warehouse

SPEC = {
    "task": "classification",
    "entity_id": "id",
    "target": "label",
    "candidates": {"hist_gradient_boosting": {"learning_rate": [0.1]}},
    "search": {"cv_folds": 2},
    "evaluation": {"learning_curve_sizes": [0.5, 1.0], "permutation_repeats": 1},
}


def _rows(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    data = {f"x{i}": x[:, i] for i in range(8)}
    data["colour"] = rng.choice(np.array(["red", "green", "blue"]), size=n)
    data["label"] = x[:, 0] + x[:, 1] * x[:, 2] > 0
    return pa.table({"id": np.arange(n), **data})


def _model(name: str) -> MLModel:
    train = Relation("train", "bench", "train")
    scoring = Relation(name, "bench", name)
    return MLModel(
        "bench", "bench", parse_spec("bench", SPEC), train, scoring, f"{name}_predictions"
    )


def prepare(directory: Path, rows: int, factor: int) -> None:
    target = Target("bench", "duckdb", "main", path=directory / "warehouse.duckdb")
    with Warehouse.open(target, create=True) as warehouse:
        warehouse.replace_table("train", _rows(20_000, 0), schema="bench")
        for name, n in (("small", rows), ("large", rows * factor)):
            batches = (
                _rows(min(rows, n - start), start).to_batches()[0] for start in range(0, n, rows)
            )
            warehouse.replace_table(name, batches, schema="bench")
        registry = Registry(warehouse, directory / "artifacts")
        train_model(warehouse, registry, _model("small"), lambda _: None)


def measure(directory: Path, name: str) -> None:
    """Run in a child process: score one relation, print peak RSS and rows per second."""
    target = Target("bench", "duckdb", "main", path=directory / "warehouse.duckdb")
    with Warehouse.open(target, memory_limit="256MB") as warehouse:
        registry = Registry(warehouse, directory / "artifacts")
        started = time.perf_counter()
        run = score_model(warehouse, registry, _model(name), progress=lambda _: None)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": run.rows, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--measure", nargs=2, metavar=("DIR", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1])
        return
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        print(f"preparing {args.rows:,} and {args.rows * args.factor:,} rows ...")
        prepare(directory, args.rows, args.factor)
        results = {}
        for name in ("small", "large"):
            out = subprocess.run(
                [sys.executable, __file__, "--measure", folder, name],
                capture_output=True,
                text=True,
                check=True,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    small, large = results["small"], results["large"]
    print(f"{'':>10} {'rows':>12} {'seconds':>9} {'rows/s':>12} {'peak MB':>9}")
    for name, r in results.items():
        print(
            f"{name:>10} {r['rows']:>12,} {r['seconds']:>9.2f} "
            f"{r['rows'] / r['seconds']:>12,.0f} {r['peak_mb']:>9.0f}"
        )
    print(
        f"ratio large/small: rows {large['rows'] / small['rows']:.1f}x, "
        f"peak memory {large['peak_mb'] / small['peak_mb']:.2f}x, "
        f"throughput {(large['rows'] / large['seconds']) / (small['rows'] / small['seconds']):.2f}x"
    )


if __name__ == "__main__":
    main()
