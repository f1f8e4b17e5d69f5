"""warehouse-ml: declarative machine learning inside the SQL warehouse."""

__version__ = "0.1.0"
