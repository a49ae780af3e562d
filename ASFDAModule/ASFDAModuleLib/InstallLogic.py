"""The engine's Python dependencies: checked without importing them, installed on first use after asking.

torch comes from the PyTorch extension (``PyTorchUtilsLogic().installTorch``), which picks the CUDA build that
matches the driver; it is installed first, so that installing MONAI never pulls a CPU-only torch from PyPI.
The rest comes from ``Resources/requirements.txt`` through ``slicer.packaging.pip_ensure`` (Slicer 5.12 and
later) or ``slicer.util.pip_install`` (earlier). Nothing here runs at import time.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

TORCH_REQUIREMENT = "torch>=2.2"
REQUESTER = "ASFDA"


@dataclass
class DependencyReport:
    """Which requirements this Python does not satisfy yet."""

    missing: list[str] = field(default_factory=list)
    torchMissing: bool = False

    @property
    def satisfied(self) -> bool:
        return not self.missing and not self.torchMissing

    def describe(self) -> str:
        items = (
            ["PyTorch (through the PyTorch extension, with the build that fits your GPU)"]
            if self.torchMissing
            else []
        ) + self.missing
        return ", ".join(items)


class PackageInstaller(Protocol):
    """How packages get installed; Slicer's installers in the application, a recording double in tests."""

    def installTorch(self, requirement: str) -> None: ...

    def installRequirements(self, requirements: list[str]) -> None: ...


def readRequirements(path: str | Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def isSatisfied(requirement: str) -> bool:
    """Whether an installed distribution satisfies ``requirement`` (name, version specifier, marker)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # Slicer ships packaging; a bare interpreter may not: then presence is all we check
        name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
        return _installedVersion(name) is not None
    parsed = Requirement(requirement)
    if parsed.marker is not None and not parsed.marker.evaluate():
        return True
    installed = _installedVersion(parsed.name)
    return installed is not None and parsed.specifier.contains(installed, prereleases=True)


def checkDependencies(requirementsFile: str | Path) -> DependencyReport:
    return DependencyReport(
        missing=[r for r in readRequirements(requirementsFile) if not isSatisfied(r)],
        torchMissing=not isSatisfied(TORCH_REQUIREMENT),
    )


class InstallLogic:
    """Ask once, then install whatever is missing; ``confirm`` shows the question (a dialog in Slicer)."""

    def __init__(
        self,
        requirementsFile: str | Path,
        confirm: Callable[[str], bool],
        installer: PackageInstaller | None = None,
    ):
        self.requirementsFile = Path(requirementsFile)
        self.confirm = confirm
        self.installer = installer or SlicerPackageInstaller()

    def check(self) -> DependencyReport:
        return checkDependencies(self.requirementsFile)

    def ensureDependencies(self) -> bool:
        """True when everything is there (installing it if the user agrees), False if the user declined."""
        report = self.check()
        if report.satisfied:
            return True
        question = (
            f"ASFDA needs these Python packages in Slicer: {report.describe()}.\n\n"
            "Install them now? This downloads several hundred MB and may take a few minutes."
        )
        if not self.confirm(question):
            return False
        if report.torchMissing:
            self.installer.installTorch(TORCH_REQUIREMENT)
        if report.missing:
            self.installer.installRequirements(report.missing)
        remaining = self.check()
        if not remaining.satisfied:
            raise RuntimeError(
                f"still missing after the install: {remaining.describe()}. "
                "Restart Slicer and try again; the Python console shows what pip reported."
            )
        return True


class SlicerPackageInstaller:
    """Slicer's installers; only usable inside the Slicer application."""

    def installTorch(self, requirement: str) -> None:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise RuntimeError(
                "ASFDA needs the PyTorch extension: install it from the Extensions Manager, "
                "restart Slicer, then try again"
            ) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            return
        specifier = requirement[len("torch") :]
        if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=specifier) is None:
            raise RuntimeError("PyTorch could not be installed; see the Python console for why")

    def installRequirements(self, requirements: list[str]) -> None:
        import slicer

        try:
            import slicer.packaging as packaging
        except ImportError:
            packaging = None
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            # The user already agreed to the whole list: no second prompt.
            packaging.pip_ensure(requirements, prompt_install=False, requester=REQUESTER)
        else:
            logging.info("ASFDA: installing %s", " ".join(requirements))
            slicer.util.pip_install(requirements)


def _installedVersion(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
