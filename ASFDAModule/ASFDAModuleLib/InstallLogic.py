"""The engine's Python dependencies: checked without importing them, installed on first use after asking.

What Slicer and the PyTorch extension provide is never installed, upgraded or downgraded here: torch (the
PyTorch extension picks the CUDA build that fits the driver), SimpleITK, numpy and VTK. pip runs with a
constraints file that pins each of them that has pip metadata to the version installed, so a dependency
that wants another version fails to install instead of replacing Slicer's. Slicer's own VTK is built with
Slicer and has no pip metadata, so it cannot be pinned: the constraints forbid any ``vtk`` wheel instead
(``vtk<0``), and a package that needs VTK from pip fails to install rather than shadow Slicer's. MONAI is
not in ``Resources/requirements.txt``: its version is chosen to fit the installed torch and numpy
(``monaiRequirement``). The user sees the exact list, and the pins, before anything is installed. Nothing
here runs at import time.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .i18n import _

TORCH_REQUIREMENT = "torch>=2.2"
# Installed by Slicer itself or by the PyTorch extension: pinned, never touched.
PROVIDED = ("torch", "SimpleITK", "numpy", "vtk")
# Built with Slicer, not installed by pip: without metadata to pin, no pip release of it may be installed.
NEVER_FROM_PIP = ("vtk",)
REQUESTER = "ASFDA"

VersionOf = Callable[[str], "str | None"]


class IncompatibleTorchError(RuntimeError):
    """No MONAI release fits the torch and numpy that Slicer has."""


class OutdatedTorchError(RuntimeError):
    """An older torch than ASFDA needs is installed; the PyTorch extension does not replace it."""


def release(version: str) -> tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``: the numeric release, enough to compare the versions used here."""
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def monaiRequirement(
    torchVersion: str, numpyVersion: str | None, python: tuple = sys.version_info[:2]
) -> str:
    """The MONAI releases that fit the installed torch, numpy and Python.

    From the releases' metadata on PyPI (``pip download --no-deps monai==X``): MONAI 1.6.0 requires
    torch>=2.8.0 and Python>=3.10; 1.5.1 requires torch>=2.4.1 and numpy<3; 1.4.0 requires torch>=1.9 and
    numpy<2.
    """
    torch = release(torchVersion)
    numpy = release(numpyVersion) if numpyVersion else (1,)
    if torch >= (2, 8) and tuple(python) >= (3, 10):
        return "monai>=1.6,<1.7"
    if torch >= (2, 4, 1):
        return "monai>=1.5.1,<1.6"
    if numpy < (2,):
        return "monai>=1.4,<1.5"
    raise IncompatibleTorchError(
        _(
            "PyTorch {torch} is older than 2.4.1, and the MONAI releases for it need numpy<2, but Slicer has "
            "numpy {numpy}: update PyTorch with the PyTorch extension (Slicer's numpy is not changed)"
        ).format(torch=torchVersion, numpy=numpyVersion)
    )


_SPECIFIER = re.compile(r"(==|!=|>=|<=|~=|>|<)\s*([^,\s]+)")


def isSatisfied(requirement: str, versionOf: VersionOf | None = None) -> bool:
    """Whether an installed distribution satisfies ``name[>=x,<y]`` (the forms the module's files use)."""
    versionOf = versionOf or _installedVersion
    match = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", requirement.split(";")[0].strip())
    name, specifiers = match.group(1), match.group(2)
    installed = versionOf(name)
    if installed is None:
        return False
    have = release(installed)
    for operator, wanted in _SPECIFIER.findall(specifiers):
        want = release(wanted)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {
            "==": a == b,
            "!=": a != b,
            ">=": a >= b,
            "<=": a <= b,
            ">": a > b,
            "<": a < b,
            "~=": a >= b and a[: len(want) - 1] == b[: len(want) - 1],
        }[operator]
        if not ok:
            return False
    return True


def readRequirements(path: str | Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def requirementName(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]


@dataclass
class InstallPlan:
    """What would be installed, and what is pinned to the version Slicer has."""

    torchMissing: bool
    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    outdatedTorch: str | None = None  # the installed torch's version when it is older than ASFDA needs

    @property
    def satisfied(self) -> bool:
        return not self.torchMissing and not self.requirements

    def describe(self) -> str:
        lines = []
        if self.torchMissing:
            lines.append(
                _(
                    "- PyTorch, through the PyTorch extension (the build that fits your GPU), then MONAI in "
                    "the release that fits that PyTorch"
                )
            )
        lines += [f"- {requirement}" for requirement in self.requirements]
        text = "\n".join(lines)
        if self.constraints:
            text += "\n\n" + _("Kept as they are (pip may not change them): {pins}").format(
                pins=", ".join(self.constraints)
            )
        return text

    def outdatedTorchAdvice(self) -> str:
        """What to do when an old torch is installed: the PyTorch extension installs only where none is."""
        return _(
            "PyTorch {version} is installed, but ASFDA needs PyTorch 2.2 or later, and the PyTorch extension "
            "does not replace an installed PyTorch. Uninstall it: open Modules > Utilities > PyTorch Utils "
            "and press Uninstall (or type slicer.util.pip_uninstall('torch torchvision') in the Python "
            "console), restart Slicer, then start the backend again: ASFDA then installs a current PyTorch "
            "through the PyTorch extension."
        ).format(version=self.outdatedTorch)


def planInstall(
    requirementsFile: str | Path, versionOf: VersionOf | None = None, python: tuple = sys.version_info[:2]
) -> InstallPlan:
    versionOf = versionOf or _installedVersion
    listed = readRequirements(requirementsFile)
    touched = [r for r in listed if requirementName(r).lower() in {p.lower() for p in PROVIDED}]
    if touched:
        raise ValueError(
            _("{file}: lists {names}, which Slicer provides; remove them").format(
                file=requirementsFile, names=", ".join(touched)
            )
        )
    constraints = [pipConstraint(name, versionOf(name)) for name in PROVIDED]
    constraints = [line for line in constraints if line]
    torchVersion = versionOf("torch")
    if torchVersion is None or not isSatisfied(TORCH_REQUIREMENT, versionOf):
        missing = [r for r in listed if not isSatisfied(r, versionOf)]
        return InstallPlan(True, missing, constraints, outdatedTorch=torchVersion)
    wanted = [*listed, monaiRequirement(torchVersion, versionOf("numpy"), python)]
    return InstallPlan(False, [r for r in wanted if not isSatisfied(r, versionOf)], constraints)


def pipConstraint(name: str, version: str | None) -> str | None:
    """The constraints-file line that keeps what Slicer provides: its installed version, or, for what Slicer
    builds itself and pip cannot see, no pip release at all (``vtk<0`` matches no version)."""
    if version:
        return f"{name}=={version}"
    return f"{name}<0" if name in NEVER_FROM_PIP else None


class PackageInstaller(Protocol):
    """How packages get installed; Slicer's installers in the application, a recording double in tests."""

    def installTorch(self, requirement: str) -> None: ...

    def installRequirements(self, requirements: list[str], constraintsFile: Path) -> None: ...


class InstallLogic:
    """Ask once, showing the exact list, then install; ``confirm`` shows the question (a dialog in Slicer)."""

    def __init__(
        self,
        requirementsFile: str | Path,
        confirm: Callable[[str], bool],
        installer: PackageInstaller | None = None,
        versionOf: VersionOf | None = None,
    ):
        self.requirementsFile = Path(requirementsFile)
        self.confirm = confirm
        self.installer = installer or SlicerPackageInstaller()
        self.versionOf = versionOf or _installedVersion

    def plan(self) -> InstallPlan:
        return planInstall(self.requirementsFile, self.versionOf)

    def ensureDependencies(self) -> bool:
        """True when everything is there (installing it if the user agrees), False if the user declined."""
        plan = self.plan()
        if plan.satisfied:
            return True
        if plan.outdatedTorch:  # the PyTorch extension would return at once: say what to do instead
            raise OutdatedTorchError(plan.outdatedTorchAdvice())
        question = _(
            "ASFDA needs these Python packages in Slicer:\n{packages}\n\n"
            "Install them now? This downloads several hundred MB and may take a few minutes."
        ).format(packages=plan.describe())
        if not self.confirm(question):
            return False
        if plan.torchMissing:
            self.installer.installTorch(TORCH_REQUIREMENT)
            plan = self.plan()  # MONAI's release depends on the torch just installed
            if plan.outdatedTorch:
                raise OutdatedTorchError(plan.outdatedTorchAdvice())
            if plan.torchMissing:
                raise RuntimeError(
                    _("PyTorch is still missing after the PyTorch extension ran; restart Slicer")
                )
        if plan.requirements:
            with tempfile.TemporaryDirectory() as folder:
                constraintsFile = Path(folder) / "constraints.txt"
                constraintsFile.write_text("".join(f"{line}\n" for line in plan.constraints))
                self.installer.installRequirements(plan.requirements, constraintsFile)
        remaining = self.plan()
        if not remaining.satisfied:
            raise RuntimeError(
                _(
                    "still missing after the install:\n{packages}\n"
                    "Restart Slicer and try again; the Python console shows what pip reported."
                ).format(packages=remaining.describe())
            )
        return True


class SlicerPackageInstaller:
    """Slicer's installers; only usable inside the Slicer application."""

    def installTorch(self, requirement: str) -> None:
        """torch alone, in the build the PyTorch extension picks for the driver (light-the-torch).

        ``PyTorchUtilsLogic.installTorch`` also installs torchvision, which ASFDA does not use: its own
        light-the-torch arguments are taken without torchvision and run the way it runs them.
        """
        import slicer

        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise RuntimeError(
                _(
                    "ASFDA needs the PyTorch extension: install it from the Extensions Manager, "
                    "restart Slicer, then try again"
                )
            ) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic
        if torchLogic.torchInstalled():
            return
        arguments = torchOnly(torchLogic._getPipInstallArguments(None, requirement[len("torch") :]))
        try:
            import light_the_torch._patch  # noqa: F401 - the extension installs it on first use
        except ImportError:
            torchLogic._installLightTheTorch()
        logging.info("ASFDA: light-the-torch %s", " ".join(arguments))
        slicer.util._executePythonModule("light_the_torch", arguments)
        if not torchLogic.torchInstalled():
            raise RuntimeError(_("PyTorch could not be installed; see the Python console for why"))

    def installRequirements(self, requirements: list[str], constraintsFile: Path) -> None:
        import slicer

        # pip_install takes pip's arguments: the constraints keep torch, SimpleITK, numpy and VTK as they are.
        logging.info("ASFDA: pip install -c %s %s", constraintsFile, " ".join(requirements))
        slicer.util.pip_install(["-c", str(constraintsFile), *requirements])


def torchOnly(arguments: list[str]) -> list[str]:
    """The PyTorch extension's install arguments without torchvision."""
    return [argument for argument in arguments if requirementName(argument).lower() != "torchvision"]


def _installedVersion(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
