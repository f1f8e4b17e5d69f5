"""Real dbt runs on a temporary DuckDB warehouse loaded with small demo data."""

from datetime import date

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ml.dbt import run_dbt
from ml.load import RAW_SCHEMA
from ml.project import Project
from tests.conftest import open_warehouse

pytestmark = pytest.mark.slow

FEATURES = [
    "preferred_store_name",
    "tenure_days",
    "recency_days",
    "count_orders",
    "count_orders_last_30d",
    "count_orders_last_90d",
    "lifetime_spend",
    "spend_last_30d",
    "spend_prior_30d",
    "spend_last_90d",
    "spend_trend_30d",
    "avg_order_value",
    "food_item_share",
    "weekend_order_share",
]


def _read(project: Project, name: str, schema: str = "main") -> pa.Table:
    with open_warehouse(project, read_only=True) as warehouse:
        return warehouse.read_arrow(warehouse.table(name, schema=schema))


def test_build_creates_every_mart(built_project_template: Project) -> None:
    with open_warehouse(built_project_template, read_only=True) as warehouse:
        tables = set(warehouse.list_tables(schema="main"))
    expected = {
        "customers",
        "orders",
        "order_items",
        "products",
        "stores",
        "customer_features",
        "customer_features_current",
        "bank_marketing_features",
    }
    assert expected <= tables


def test_customer_features_grain_and_labels(built_project_template: Project) -> None:
    features = _read(built_project_template, "customer_features")
    keys = features.select(["customer_id", "as_of_date"]).to_pylist()
    assert len(keys) == len({(k["customer_id"], k["as_of_date"]) for k in keys})
    as_of_dates = sorted(set(features.column("as_of_date").to_pylist()))
    assert len(as_of_dates) >= 12 and all(d.day == 1 for d in as_of_dates)
    # The classification label is the top quarter at every date: never degenerate.
    for as_of in as_of_dates:
        rows = features.filter(pc.equal(features.column("as_of_date"), as_of))
        positives = pc.sum(rows.column("is_high_value_next_30d")).as_py() or 0
        assert 0.2 <= positives / rows.num_rows <= 0.3 or rows.num_rows < 8, as_of
    assert set(features.column_names) >= set(FEATURES) | {"next_30d_spend"}


def test_current_snapshot_has_one_row_per_customer_and_no_label(
    built_project_template: Project,
) -> None:
    current = _read(built_project_template, "customer_features_current")
    customers = _read(built_project_template, "customers")
    assert current.num_rows == customers.num_rows
    assert len(set(current.column("as_of_date").to_pylist())) == 1
    assert not {"next_30d_spend", "is_high_value_next_30d"} & set(current.column_names)
    last_order = pc.max(_read(built_project_template, "orders").column("ordered_at")).as_py()
    assert current.column("as_of_date")[0].as_py() > last_order.date()


def test_bank_features_clean_unknowns_pdays_and_drop_duration(
    built_project_template: Project,
) -> None:
    bank = _read(built_project_template, "bank_marketing_features")
    assert bank.num_rows == 41_188
    assert "call_duration_seconds" not in bank.column_names
    assert "duration" not in bank.column_names
    assert "unknown" not in set(bank.column("job").to_pylist())
    assert 999 not in set(bank.column("days_since_previous_contact").to_pylist())
    never = pc.invert(bank.column("was_previously_contacted"))
    assert pc.all(pc.is_null(pc.filter(bank.column("days_since_previous_contact"), never))).as_py()
    assert abs(pc.mean(bank.column("has_subscribed").cast(pa.int8())).as_py() - 0.1127) < 1e-3


def test_features_never_read_data_at_or_after_their_as_of_date(built_project: Project) -> None:
    """Rewrite every order from a cutoff on, rebuild: features up to the cutoff must not move."""
    cutoff = date(2019, 11, 1)
    before = _read(built_project, "customer_features")
    with open_warehouse(built_project) as warehouse:
        orders = warehouse.table("raw_orders", schema=RAW_SCHEMA)
        ordered_at = orders.ordered_at.cast("timestamp")
        future = ordered_at >= ibis.timestamp(cutoff.isoformat())
        # Future orders double in value and move to the last store: any leak shows.
        changed = orders.mutate(
            order_total=ibis.ifelse(future, orders.order_total * 2, orders.order_total),
            store_id=ibis.ifelse(future, orders.store_id.max(), orders.store_id),
        )
        warehouse.replace_table("raw_orders", warehouse.read_arrow(changed), schema=RAW_SCHEMA)
    run_dbt(built_project, ["build", "--select", "+customer_features"], quiet=True)
    after = _read(built_project, "customer_features")

    def rows_until_cutoff(table: pa.Table) -> list[dict[str, object]]:
        kept = table.filter(pc.less_equal(table.column("as_of_date"), cutoff))
        kept = kept.select(["customer_id", "as_of_date", *FEATURES])
        return sorted(kept.to_pylist(), key=lambda r: (r["customer_id"], r["as_of_date"]))

    assert rows_until_cutoff(after) == rows_until_cutoff(before)
    assert len(rows_until_cutoff(before)) > 100
    # ...while the labels that look past the cutoff do change, so the rewrite was real.
    spent = lambda t: pc.sum(  # noqa: E731
        t.filter(pc.greater_equal(t.column("as_of_date"), cutoff)).column("next_30d_spend")
    ).as_py()
    assert spent(after) > spent(before)


def test_docs_generate(built_project: Project) -> None:
    run_dbt(built_project, ["docs", "generate"], quiet=True)
    assert (built_project.dbt_target_dir / "catalog.json").is_file()
    assert (built_project.dbt_target_dir / "index.html").is_file()
