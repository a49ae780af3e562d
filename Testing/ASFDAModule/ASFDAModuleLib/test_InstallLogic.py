"""Dependencies: found without importing them, installed after one confirmation that lists them, with what
Slicer provides (torch, SimpleITK, numpy, VTK) pinned (VTK, without pip metadata in Slicer, forbidden) and
never installed.

The installer here is a recording double: Slicer's installers (the PyTorch extension, slicer.util.pip_install)
exist only in the Slicer application and would change this Python. Installed versions come from a dictionary.
"""

from __future__ import annotations

import re

import pytest
from ASFDAModuleLib import InstallLogic as install

SLICER_5_8 = {"torch": "2.3.1+cu121", "numpy": "1.26.4", "SimpleITK": "2.4.0", "vtk": "9.2.20230607"}
SLICER_5_10 = {"torch": "2.9.0", "numpy": "2.2.1", "SimpleITK": "2.5.0", "vtk": "9.4.2"}


class RecordingInstaller:
    def __init__(self, installed: dict, onTorch=None, onPip=None):
        self.calls = []
        self.installed = installed
        self.onTorch, self.onPip = onTorch or {}, onPip or {}

    def installTorch(self, requirement):
        self.calls.append(("torch", requirement))
        self.installed.update(self.onTorch)

    def installRequirements(self, requirements, constraintsFile):
        self.calls.append(("pip", list(requirements), constraintsFile.read_text().split()))
        self.installed.update(self.onPip)


@pytest.fixture
def requirements(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nscipy>=1.10\n\nnibabel>=5.0  # reads NIfTI\n")
    return path


@pytest.mark.parametrize(
    ("torch", "numpy", "python", "monai"),
    [
        ("2.13.0+cpu", "2.1.0", (3, 11), "monai>=1.6,<1.7"),  # 1.6 needs torch>=2.8, Python>=3.10
        ("2.8.0", "2.1.0", (3, 9), "monai>=1.5.1,<1.6"),  # ... not on Python 3.9
        ("2.5.1", "2.0.0", (3, 12), "monai>=1.5.1,<1.6"),  # 1.5.1 needs torch>=2.4.1
        ("2.3.1+cu121", "1.26.4", (3, 9), "monai>=1.4,<1.5"),  # older torch: 1.4, which needs numpy<2
    ],
)
def test_monai_fits_the_installed_torch(torch, numpy, python, monai):
    assert install.monaiRequirement(torch, numpy, python) == monai


def test_an_old_torch_with_numpy_2_is_a_clear_error_not_a_numpy_downgrade():
    with pytest.raises(install.IncompatibleTorchError, match="update PyTorch with the PyTorch extension"):
        install.monaiRequirement("2.3.0", "2.0.1", (3, 11))


def test_versions_are_compared_by_release():
    versions = {"monai": "1.5.1", "torch": "2.13.0+cpu"}.get
    assert install.isSatisfied("monai>=1.5.1,<1.6", versions)
    assert not install.isSatisfied("monai>=1.6,<1.7", versions)
    assert install.isSatisfied("torch>=2.2", versions) and not install.isSatisfied("scipy", versions)


def test_the_question_lists_what_will_be_installed_and_what_is_kept(requirements):
    installed = dict(SLICER_5_10, scipy="1.14.0")
    questions = []
    installer = RecordingInstaller(installed, onPip={"nibabel": "5.3.0", "monai": "1.6.0"})
    logic = install.InstallLogic(
        requirements, lambda q: questions.append(q) or True, installer, installed.get
    )

    assert logic.ensureDependencies()

    [question] = questions
    assert "- nibabel>=5.0" in question and "- monai>=1.6,<1.7" in question and "scipy" not in question
    assert "torch==2.9.0" in question and "numpy==2.2.1" in question and "SimpleITK==2.5.0" in question
    [(kind, requirements, constraints)] = installer.calls
    assert requirements == ["nibabel>=5.0", "monai>=1.6,<1.7"]
    assert constraints == ["torch==2.9.0", "SimpleITK==2.5.0", "numpy==2.2.1", "vtk==9.4.2"]


def test_torch_first_through_the_extension_then_monai_for_that_torch(requirements):
    installed = {"numpy": "1.26.4", "SimpleITK": "2.4.0"}
    questions = []
    installer = RecordingInstaller(
        installed,
        onTorch={"torch": "2.3.1+cu121"},
        onPip={"scipy": "1.13.0", "nibabel": "5.2.0", "monai": "1.4.0"},
    )
    logic = install.InstallLogic(
        requirements, lambda q: questions.append(q) or True, installer, installed.get
    )

    assert logic.ensureDependencies()

    assert len(questions) == 1 and "PyTorch extension" in questions[0]
    assert installer.calls[0] == ("torch", "torch>=2.2")
    assert installer.calls[1][1] == ["scipy>=1.10", "nibabel>=5.0", "monai>=1.4,<1.5"]
    assert "torch==2.3.1+cu121" in installer.calls[1][2] and "numpy==1.26.4" in installer.calls[1][2]


def test_declining_installs_nothing_and_nothing_is_asked_when_all_is_there(requirements):
    installed = dict(SLICER_5_8)
    installer = RecordingInstaller(installed)
    assert not install.InstallLogic(
        requirements, lambda q: False, installer, installed.get
    ).ensureDependencies()
    assert installer.calls == []

    installed.update(scipy="1.13.0", nibabel="5.2.0", monai="1.4.0")
    asked = []
    assert install.InstallLogic(requirements, asked.append, installer, installed.get).ensureDependencies()
    assert asked == [] and installer.calls == []


def test_a_failed_install_says_what_is_still_missing(requirements):
    installed = dict(SLICER_5_8)
    logic = install.InstallLogic(requirements, lambda q: True, RecordingInstaller(installed), installed.get)

    with pytest.raises(RuntimeError, match="still missing after the install:\n- scipy>=1.10"):
        logic.ensureDependencies()


def test_a_requirements_file_that_names_what_slicer_provides_is_refused(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("scipy\nSimpleITK>=2.3\n")
    with pytest.raises(ValueError, match="SimpleITK>=2.3, which Slicer provides"):
        install.planInstall(path, SLICER_5_8.get)


def test_the_module_requirements_file_lists_the_engine_dependencies_but_nothing_slicer_provides():
    from module_paths import MODULE_DIR, ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    engine = project["dependencies"] + project["optional-dependencies"]["server"]

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()

    listed = {name(r) for r in install.readRequirements(MODULE_DIR / "Resources" / "requirements.txt")}
    provided = {p.lower() for p in install.PROVIDED}
    assert listed.isdisjoint(provided | {"monai"})  # monai: chosen to fit the installed torch
    assert listed == {name(r) for r in engine} - provided - {"monai"}
    # Only the standard library: nothing torch, numpy or SimpleITK is imported to decide.
    source = (MODULE_DIR / "ASFDAModuleLib" / "InstallLogic.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+(torch|numpy|SimpleITK|vtk|monai)\b", source, re.M)


def test_an_old_torch_is_a_clear_instruction_before_anything_is_asked_or_installed(requirements):
    """Defect: with torch 2.1 installed the PyTorch extension returned at once (it installs only where no
    torch is) and the user read "PyTorch is still missing ... restart Slicer": a restart does not fix it."""
    installed = dict(SLICER_5_8, torch="2.1.2+cu118")
    questions = []
    installer = RecordingInstaller(installed)
    logic = install.InstallLogic(
        requirements, lambda q: questions.append(q) or True, installer, installed.get
    )

    with pytest.raises(install.OutdatedTorchError) as raised:
        logic.ensureDependencies()

    advice = str(raised.value)
    assert "PyTorch 2.1.2+cu118 is installed" in advice and "2.2 or later" in advice
    assert "PyTorch Utils" in advice and "Uninstall" in advice and "pip_uninstall('torch" in advice
    assert "restart Slicer, then start the backend again" in advice
    assert questions == [] and installer.calls == []


def test_slicers_vtk_without_pip_metadata_is_protected_by_a_constraint_no_release_meets(requirements):
    """Defect: inside Slicer VTK has no pip metadata, so it was silently left out of the constraints, while
    the README said it was pinned; ``vtk<0`` matches no release, so pip refuses any vtk wheel."""
    slicer = {name: version for name, version in SLICER_5_10.items() if name != "vtk"}

    plan = install.planInstall(requirements, slicer.get)

    assert plan.constraints == ["torch==2.9.0", "SimpleITK==2.5.0", "numpy==2.2.1", "vtk<0"]
    assert install.planInstall(requirements, SLICER_5_10.get).constraints[-1] == "vtk==9.4.2"
    assert install.pipConstraint("SimpleITK", None) is None  # only what Slicer builds itself is forbidden


def test_the_pytorch_extension_path_installs_torch_alone(monkeypatch):
    """Defect: ``PyTorchUtilsLogic.installTorch`` also installs torchvision, which ASFDA does not use.

    The PyTorch extension exists only in Slicer: this stand-in has the calls ASFDA makes, with the extension's
    own argument list (``install torch<spec> torchvision``) and ``torchInstalled`` turning true after
    light-the-torch ran, as in SlicerPyTorch's PyTorchUtils.py."""
    import sys
    import types

    import slicer

    ran = []

    class PyTorchUtilsLogic:
        def installTorch(
            self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None
        ):
            slicer.util._executePythonModule(
                "light_the_torch",
                self._getPipInstallArguments(forceComputationBackend, torchVersionRequirement),
            )
            return object()

        @staticmethod
        def torchInstalled():
            return bool(ran)

        @staticmethod
        def _getPipInstallArguments(forceComputationBackend=None, torchVersionRequirement=None):
            return ["install", "torch" + (torchVersionRequirement or ""), "torchvision"]

        @staticmethod
        def _installLightTheTorch():
            ran.append(("pip", "light-the-torch>=0.5"))

    lightTheTorch = types.ModuleType("light_the_torch")
    lightTheTorch._patch = types.ModuleType("light_the_torch._patch")
    monkeypatch.setitem(
        sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic)
    )
    monkeypatch.setitem(sys.modules, "light_the_torch", lightTheTorch)
    monkeypatch.setitem(sys.modules, "light_the_torch._patch", lightTheTorch._patch)
    monkeypatch.setattr(
        slicer.util, "_executePythonModule", lambda module, args: ran.append((module, args)), raising=False
    )

    install.SlicerPackageInstaller().installTorch(install.TORCH_REQUIREMENT)

    assert ran == [("light_the_torch", ["install", "torch>=2.2"])]
