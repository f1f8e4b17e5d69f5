"""The training relation, split and typed as model inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.frames import FeatureSchema


@dataclass
class Dataset:
    """Model inputs per split (``train``, ``valid``, ``test``).

    ``targets`` are None for clustering; ``groups`` are the training rows' entity ids;
    ``fingerprint`` is the sha256 of the rows read, in a fixed order.
    """

    schema: FeatureSchema
    frames: dict[str, pd.DataFrame]
    targets: dict[str, np.ndarray | None]
    groups: np.ndarray
    fingerprint: str
