"""Command line: parse arguments, call the workflow, print. Nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ml import __version__
from ml.errors import MLError

EXIT_OK = 0
EXIT_ERROR = 2
#: `ml monitor` and `ml run` report the worst monitoring status in their exit code.
EXIT_STATUS = {"ok": EXIT_OK, "warn": 3, "alert": 4}

#: Commands that change the warehouse; each publishes a fresh BI snapshot when it succeeds.
WRITING_COMMANDS = {
    "load",
    "build",
    "train",
    "score",
    "monitor",
    "run",
    "promote",
    "rollback",
    "demo",
    "publish",
}


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--years", type=int, default=3, help="simulated years (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="customer multiplier (default 1)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")


def _version_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--version", type=int, dest="model_version", help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml", description="Declarative machine learning in your dbt warehouse."
    )
    parser.add_argument("--version", action="version", version=f"warehouse-ml {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = commands.add_parser("load", help="load the demo data into the raw schema")
    _data_options(load)
    load.add_argument("--force", action="store_true", help="reload even when up to date")

    build = commands.add_parser("build", help="dbt build: models, data tests, unit tests")
    build.add_argument("--select", "-s", nargs="+", default=None, help="dbt node selection")

    train = commands.add_parser("train", help="train, evaluate and register models")
    train.add_argument("names", nargs="*", metavar="NAME", help="ML exposures (default: all)")
    train.add_argument(
        "--force", action="store_true", help="train even when nothing changed since the champion"
    )

    score = commands.add_parser("score", help="write batch predictions with the champion")
    score.add_argument("names", nargs="*", metavar="NAME", help="ML exposures (default: all)")
    _version_option(score, "score with this version instead of the champion")
    score.add_argument(
        "--incremental",
        action="store_true",
        help="score only entities that are new or whose features changed",
    )

    monitor = commands.add_parser("monitor", help="drift and realised performance; exit 0/3/4")
    monitor.add_argument("names", nargs="*", metavar="NAME", help="ML exposures (default: all)")

    run = commands.add_parser(
        "run", help="build, train when needed, score, monitor, build downstream; exit 0/3/4"
    )
    run.add_argument("names", nargs="*", metavar="NAME", help="ML exposures (default: all)")
    run.add_argument(
        "--select",
        "-s",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="models to run (names or wildcards such as customer_*)",
    )
    run.add_argument(
        "--exclude", nargs="+", default=[], metavar="PATTERN", help="models to leave out"
    )
    run.add_argument("--force", action="store_true", help="retrain every selected model")
    run.add_argument("--incremental", action="store_true", help="incremental scoring")
    run.add_argument(
        "--vars",
        dest="dbt_vars",
        metavar="YAML",
        help="dbt --vars for both builds, e.g. '{scoring_as_of_date: 2021-06-01}'",
    )

    history = commands.add_parser("history", help="what changed in each version of a model")
    history.add_argument("name", metavar="NAME")

    report = commands.add_parser("report", help="write the HTML report of a model version")
    report.add_argument("names", nargs="*", metavar="NAME", help="ML exposures (default: all)")
    _version_option(report, "report on this version instead of the champion")

    models = commands.add_parser("models", help="list registered models and versions")
    models.add_argument("names", nargs="*", metavar="NAME")

    promote = commands.add_parser("promote", help="make a version the champion")
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("model_version", type=int, metavar="VERSION")

    rollback = commands.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("name", metavar="NAME")

    demo = commands.add_parser("demo", help="load, build, train, score and summarise the demo")
    _data_options(demo)

    commands.add_parser("publish", help="publish the read-only warehouse snapshot for BI tools")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ml import workflow
    from ml.demo_data import JaffleParams
    from ml.monitor import worst_status
    from ml.project import Project

    status = "ok"
    try:
        workspace = workflow.Workspace.open(Project.discover())
        if args.command == "load":
            params = JaffleParams(years=args.years, scale=args.scale, seed=args.seed)
            workflow.load(workspace, params, force=args.force)
        elif args.command == "build":
            workflow.build(workspace, args.select)
        elif args.command == "train":
            workflow.train(workspace, args.names, force=args.force)
        elif args.command == "score":
            workflow.score(
                workspace, args.names, version=args.model_version, incremental=args.incremental
            )
        elif args.command == "monitor":
            results = workflow.monitor(workspace, args.names)
            status = worst_status(r.status for r in results)
        elif args.command == "run":
            summary = workflow.run(
                workspace,
                [*args.names, *args.select] or None,
                exclude=args.exclude,
                force=args.force,
                incremental=args.incremental,
                dbt_vars=args.dbt_vars,
            )
            print("\nml run summary")
            for line in summary.lines:
                print(f"  {line}")
            print(f"status: {summary.status}")
            status = summary.status
        elif args.command == "history":
            print(workflow.history(workspace, args.name))
        elif args.command == "report":
            workflow.report(workspace, args.names, version=args.model_version)
        elif args.command == "models":
            print(workflow.models_table(workspace, args.names))
        elif args.command == "promote":
            print(workflow.promote(workspace, args.name, args.model_version))
        elif args.command == "rollback":
            print(workflow.rollback(workspace, args.name))
        elif args.command == "demo":
            params = JaffleParams(years=args.years, scale=args.scale, seed=args.seed)
            demo_lines = workflow.demo(workspace, params)
            print("\nwarehouse-ml demo: every model trained, registered, scored and monitored")
            print(f"warehouse: {workspace.project.duckdb_path}")
            for line in demo_lines:
                print(f"  {line}")
            print("list versions with: .venv/bin/ml models")
        if args.command in WRITING_COMMANDS:
            print(f"BI snapshot published: {workspace.publish()}")
    except MLError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_STATUS[status]


if __name__ == "__main__":
    sys.exit(main())
