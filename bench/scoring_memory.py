"""Benchmark: batch scoring streams, so its memory does not grow with the row count.

Scores the same model over relations of growing size (``--rows`` times each of
``--factors``), each in its own process with DuckDB's memory limit at 256MB, and prints
peak resident memory and throughput side by side, with their ratios to the smallest.

    .venv/bin/python bench/scoring_memory.py [--rows 200000] [--factors 1 5 25]
"""

from __future__ import annotations

import argparse
import json
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


def prepare(directory: Path, sizes: dict[str, int], chunk: int) -> None:
    target = Target("bench", "duckdb", "main", path=directory / "warehouse.duckdb")
    with Warehouse.open(target, create=True) as warehouse:
        warehouse.replace_table("train", _rows(20_000, 0), schema="bench")
        for name, n in sizes.items():
            batches = (
                _rows(min(chunk, n - start), start).to_batches()[0] for start in range(0, n, chunk)
            )
            warehouse.replace_table(name, batches, schema="bench")
        registry = Registry(warehouse, directory / "artifacts")
        train_model(warehouse, registry, _model("train"), lambda _: None)


def measure(directory: Path, name: str) -> None:
    """Run in a child process: score one relation, print peak RSS and rows per second."""
    target = Target("bench", "duckdb", "main", path=directory / "warehouse.duckdb")
    with Warehouse.open(target, memory_limit="256MB") as warehouse:
        registry = Registry(warehouse, directory / "artifacts")
        started = time.perf_counter()
        run = score_model(warehouse, registry, _model(name), progress=lambda _: None)
        seconds = time.perf_counter() - started
    print(json.dumps({"rows": run.rows, "seconds": seconds, "peak_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process' peak resident memory (VmHWM), in MB.

    Not ``getrusage``: Linux carries ``ru_maxrss`` across fork and exec, so a child would
    report the parent's peak when that is higher.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 5, 25])
    parser.add_argument("--measure", nargs=2, metavar=("DIR", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1])
        return
    sizes = {f"x{factor}": args.rows * factor for factor in sorted(set(args.factors))}
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        print("preparing " + ", ".join(f"{n:,}" for n in sizes.values()) + " rows ...")
        prepare(directory, sizes, args.rows)
        results = {}
        for name in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--measure", folder, name],
                capture_output=True,
                text=True,
                check=True,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results[next(iter(sizes))]
    base_speed = base["rows"] / base["seconds"]
    print(
        f"{'':>6} {'rows':>12} {'seconds':>9} {'rows/s':>10} {'peak MB':>8} "
        f"{'rows':>7} {'memory':>7} {'speed':>6}   (ratios to the first)"
    )
    for name, r in results.items():
        speed = r["rows"] / r["seconds"]
        print(
            f"{name:>6} {r['rows']:>12,} {r['seconds']:>9.2f} {speed:>10,.0f} "
            f"{r['peak_mb']:>8.0f} {r['rows'] / base['rows']:>6.1f}x "
            f"{r['peak_mb'] / base['peak_mb']:>6.2f}x {speed / base_speed:>5.2f}x"
        )


if __name__ == "__main__":
    main()
