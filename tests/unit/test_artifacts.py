import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from ml import artifacts
from ml.errors import MLError


class NotAModel:
    """A type outside the trusted list."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def _fitted() -> LogisticRegression:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    return LogisticRegression().fit(x, np.array([0, 0, 1, 1]))


def test_round_trip_verifies_the_sha256(tmp_path: Path) -> None:
    path = tmp_path / "m" / "v1.skops"
    digest = artifacts.save(_fitted(), path)
    loaded = artifacts.load(path, expected_sha256=digest)
    assert loaded.predict(np.array([[3.0]]))[0] == 1
    assert not list(path.parent.glob("*.partial"))


def test_a_tampered_artefact_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v1.skops"
    digest = artifacts.save(_fitted(), path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("extra.txt", "tampered")
    with pytest.raises(MLError, match=r"has sha256 .* but the registry recorded .*refused"):
        artifacts.load(path, expected_sha256=digest)


def test_a_missing_artefact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MLError, match=r"is missing"):
        artifacts.load(tmp_path / "v9.skops", expected_sha256="0" * 64)


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "v1.skops"
    path.write_bytes(pickle.dumps(_fitted()))
    with pytest.raises(MLError, match="is not a skops file"):
        artifacts.load(path, expected_sha256=artifacts.sha256_of(path))


def test_untrusted_types_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "v1.skops"
    sio.dump({"model": NotAModel()}, path)
    with pytest.raises(
        MLError, match=r"untrusted types \['tests\.unit\.test_artifacts\.NotAModel'\]"
    ):
        artifacts.load(path, expected_sha256=artifacts.sha256_of(path))
