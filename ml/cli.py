"""Command line: parse arguments, call the core, print. Nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ml import __version__
from ml.errors import MLError
from ml.project import Project

EXIT_OK = 0
EXIT_ERROR = 2


def _add_load(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser("load", help="load the demo data into the raw schema")
    load.add_argument("--years", type=int, default=3, help="simulated years (default 3)")
    load.add_argument("--scale", type=float, default=1.0, help="customer multiplier (default 1)")
    load.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    load.add_argument("--force", action="store_true", help="reload even when up to date")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml", description="Declarative machine learning in your dbt warehouse."
    )
    parser.add_argument("--version", action="version", version=f"warehouse-ml {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_load(commands)
    build = commands.add_parser("build", help="dbt build (models, tests, unit tests)")
    build.add_argument("--select", "-s", nargs="*", default=None, help="dbt selection")
    demo = commands.add_parser("demo", help="load the demo data, build, train and score")
    demo.add_argument("--years", type=int, default=3)
    demo.add_argument("--scale", type=float, default=1.0)
    demo.add_argument("--seed", type=int, default=42)
    return parser


def _load(project: Project, years: int, scale: float, seed: int, force: bool) -> None:
    from ml.dbt import resolve_target
    from ml.demo_data import JaffleParams
    from ml.load import load_demo_data
    from ml.warehouse import Warehouse

    params = JaffleParams(years=years, scale=scale, seed=seed)
    with Warehouse.open(resolve_target(project)) as warehouse:
        load_demo_data(warehouse, jaffle=params, bank_dir=project.bank_dir, force=force)


def _build(project: Project, select: Sequence[str] | None) -> None:
    from ml.dbt import run_dbt

    run_dbt(project, ["build", *(["--select", *select] if select else [])])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        project = Project.discover()
        if args.command == "load":
            _load(project, args.years, args.scale, args.seed, args.force)
        elif args.command == "build":
            _build(project, args.select)
        elif args.command == "demo":
            _load(project, args.years, args.scale, args.seed, False)
            _build(project, None)
    except MLError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
