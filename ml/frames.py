"""Typing feature columns from their Arrow types, and turning Arrow tables into model input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ml.errors import MLError


@dataclass(frozen=True)
class FeatureSchema:
    """The feature columns a model was trained on, with their kinds and Arrow types.

    Numeric and boolean columns are fed to the model as floats; string columns are
    categorical. Stored with every model version, so scoring can check its input.
    """

    numeric: list[str]
    categorical: list[str]
    arrow_types: dict[str, str]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "arrow_types": self.arrow_types,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(list(data["numeric"]), list(data["categorical"]), dict(data["arrow_types"]))


def column_kind(arrow_type: pa.DataType) -> str | None:
    """``numeric``, ``categorical``, or None for types a model cannot use as they are."""
    if pa.types.is_boolean(arrow_type) or pa.types.is_integer(arrow_type):
        return "numeric"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "categorical"
    if pa.types.is_dictionary(arrow_type):
        return "categorical"
    return None


def infer_feature_schema(schema: pa.Schema, columns: list[str], *, where: str) -> FeatureSchema:
    """Type the chosen feature columns, refusing dates, timestamps and nested types.

    Parameters
    ----------
    schema
        The relation's Arrow schema.
    columns
        The feature columns, in order.
    where
        Names the model and relation in error messages.
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for name in columns:
        kind = column_kind(schema.field(name).type)
        if kind is None:
            raise MLError(
                f"{where}: feature column {name} has type {schema.field(name).type}, "
                "which a model cannot use directly",
                hint=f"derive a number from it in dbt, or add {name} to the spec's exclude list",
            )
        (numeric if kind == "numeric" else categorical).append(name)
    types = {name: str(schema.field(name).type) for name in columns}
    return FeatureSchema(numeric, categorical, types)


def to_model_frame(table: pa.Table | pa.RecordBatch, schema: FeatureSchema) -> pd.DataFrame:
    """The feature columns as a pandas frame scikit-learn accepts.

    Numbers (booleans and decimals included) become float64 with NaN for NULL; strings
    become object columns with NaN for NULL.
    """
    data: dict[str, Any] = {}
    for name in schema.numeric:
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            column = column.cast(pa.int8())
        data[name] = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    for name in schema.categorical:
        values = table.column(name).cast(pa.string()).to_numpy(zero_copy_only=False)
        data[name] = pd.array(values, dtype=object)
    frame = pd.DataFrame(data, columns=schema.columns)
    for name in schema.categorical:
        frame[name] = frame[name].where(frame[name].notna(), np.nan).astype(object)
    return frame


def target_array(table: pa.Table, column: str, task: str) -> np.ndarray:
    """The target as a numpy array: floats for regression, labels for classification."""
    values = table.column(column)
    if task == "regression":
        numbers: np.ndarray = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return numbers
    if pa.types.is_decimal(values.type):
        values = values.cast(pa.float64())
    labels: np.ndarray = np.asarray(values.to_pylist())
    return labels
