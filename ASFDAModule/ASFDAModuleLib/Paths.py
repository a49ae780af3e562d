"""Paths the user types or picks (unset is empty, never "."; a model is a folder or a TorchScript file), and
the names of files written beside their destination before they replace it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .i18n import _

# What the engine loads (asfda.models.loading): a folder (model.pt + asfda_model.json, a MONAI bundle, or a
# TorchScript file inside), or one TorchScript file.
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript", ".pt", ".pth")
MODEL_FILE_FILTER = "TorchScript model (*.ts *.torchscript *.pt *.pth)"


def pathOrNone(value) -> Path | None:
    """A path the user set, or None; "" and "." (an unset ``pathlib.Path`` printed) both mean unset."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", ".") else Path(text).expanduser()


def pathText(value) -> str:
    """What a path field shows: empty when unset."""
    path = pathOrNone(value)
    return "" if path is None else str(path)


def checkModelPath(value) -> Path | None:
    """The model to start the backend with, checked before any process starts; None when none is given.

    Raises ValueError naming the path and the problem: it does not exist, or is a file the engine cannot load.
    """
    path = pathOrNone(value)
    if path is None:
        return None
    if not path.exists():
        raise ValueError(_("model {path}: no such file or folder").format(path=path))
    if path.is_file() and not path.name.lower().endswith(TORCHSCRIPT_SUFFIXES):
        raise ValueError(
            _(
                "model {path}: not a TorchScript file ({suffixes}); choose that file, or the model's folder"
            ).format(path=path, suffixes=", ".join(TORCHSCRIPT_SUFFIXES))
        )
    return path


def safeName(text: str) -> str:
    """A file name made from a case id or a model version."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def temporaryName(path: Path, suffix: str = "") -> str:
    """Name of a file written beside ``path`` before it is renamed over it, by the engine's rule for
    temporaries (``asfda/session/temporaries.py``: hidden, with the writer's pid), so that opening a session
    sweeps those a crash left. ``suffix`` (a volume's extension, which the image writers go by) comes last."""
    stem = path.name[: len(path.name) - len(suffix)] if suffix and path.name.endswith(suffix) else path.name
    return f".{stem}.tmp{os.getpid()}-"


def replaceJson(path: Path, data) -> None:
    """``data`` as JSON, written beside ``path`` and renamed over it: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=temporaryName(path), suffix=".part")
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=1)
    os.replace(partial, path)
