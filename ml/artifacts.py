"""Model artefacts on disk: saved with skops, verified by sha256, loaded with a fixed list
of trusted types (never unpickled)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import skops.io as sio

from ml.errors import MLError

#: Types an artefact may contain beyond skops' own defaults. Anything else is refused.
_TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def save(estimator: Any, path: Path) -> str:
    """Write an estimator atomically (temporary file, then rename); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    os.close(handle)
    try:
        sio.dump(estimator, temporary)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise MLError(
            f"writing model artefact {path} failed: {error}; nothing was registered",
            hint="check free disk space and write permission on the artifacts folder",
        ) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return sha256_of(path)


def load(path: Path, *, expected_sha256: str) -> Any:
    """Load an artefact after checking its sha256 and every type it contains.

    Raises
    ------
    MLError
        When the file is missing, differs from the registered sha256, is not a skops
        file, or contains a type outside the trusted list.
    """
    if not path.is_file():
        raise MLError(
            f"model artefact {path} is missing",
            hint="retrain the model (ml train NAME) or restore the artifacts folder",
        )
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise MLError(
            f"model artefact {path} has sha256 {actual}, but the registry recorded "
            f"{expected_sha256}: the file was changed after training and is refused",
            hint="restore the original file or retrain the model (ml train NAME)",
        )
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as error:  # skops raises zipfile/json errors on foreign files
        raise MLError(
            f"model artefact {path} is not a skops file ({error}); it is refused",
            hint="retrain the model (ml train NAME)",
        ) from error
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_MODULE_PREFIXES)]
    if refused:
        raise MLError(
            f"model artefact {path} contains untrusted types {refused}; it is refused",
            hint="only scikit-learn, numpy and scipy objects are loaded",
        )
    return sio.load(path, trusted=untrusted)
