"""Where the Logic runs: inside the Slicer application, or headless with the slicer-core wheel."""

from __future__ import annotations

import os
import pathlib
import tempfile

import slicer


def moduleLogic(name: str):
    """A core module's logic (``slicer.modules.volumes.logic()``), or None where modules are not loaded."""
    module = getattr(getattr(slicer, "modules", None), name, None)
    return module.logic() if module is not None else None


def backendEnvironment() -> dict[str, str]:
    """Slicer's startup environment, so PythonSlicer sets up its own paths; this one outside Slicer."""
    try:
        return slicer.util.startupEnvironment()
    except Exception:  # no application (tests, scripts with slicer-core)
        return dict(os.environ)


def defaultCacheDir() -> pathlib.Path:
    """Slicer's temporary folder in the application, the system's elsewhere."""
    app = getattr(slicer, "app", None)
    base = pathlib.Path(app.temporaryPath) if app is not None else pathlib.Path(tempfile.gettempdir())
    return base / "ASFDA"
