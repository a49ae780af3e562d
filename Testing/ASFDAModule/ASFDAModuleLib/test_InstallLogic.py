"""Dependencies: found without importing them, installed after exactly one confirmation.

The installer here is a recording double: Slicer's installers (the PyTorch extension, slicer.packaging) exist
only in the Slicer application and would change this Python.
"""

from __future__ import annotations

import re

import pytest
from ASFDAModuleLib import InstallLogic as install


class RecordingInstaller:
    def __init__(self, onInstall=None):
        self.calls = []
        self.onInstall = onInstall or (lambda: None)

    def installTorch(self, requirement):
        self.calls.append(("torch", requirement))
        self.onInstall()

    def installRequirements(self, requirements):
        self.calls.append(("pip", list(requirements)))
        self.onInstall()


@pytest.fixture
def requirements(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# comment\nnumpy>=1.0\n\npytest  # the test runner\nsurely-not-installed-pkg>=1\n"
        "other-missing-pkg; python_version < '3'\n"
    )
    return path


def test_requirements_are_read_and_checked_without_importing(requirements):
    assert install.readRequirements(requirements) == [
        "numpy>=1.0",
        "pytest",
        "surely-not-installed-pkg>=1",
        "other-missing-pkg; python_version < '3'",
    ]
    assert install.isSatisfied("numpy>=1.0")
    assert not install.isSatisfied("numpy>=999")
    assert not install.isSatisfied("surely-not-installed-pkg")
    assert install.isSatisfied("other-missing-pkg; python_version < '3'")  # not for this Python
    assert install.checkDependencies(requirements).missing == ["surely-not-installed-pkg>=1"]


def test_the_module_requirements_file_lists_the_engine_dependencies_but_not_torch():
    from module_paths import MODULE_DIR, ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    engine = project["dependencies"] + project["optional-dependencies"]["server"]

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()

    listed = {name(r) for r in install.readRequirements(MODULE_DIR / "Resources" / "requirements.txt")}
    assert "torch" not in listed  # torch comes from the PyTorch extension
    assert listed == {name(r) for r in engine} - {"torch"}


def test_one_confirmation_then_torch_first_then_the_rest(requirements, monkeypatch):
    questions = []
    monkeypatch.setattr(install, "isSatisfied", lambda r: not r.startswith(("torch", "surely")))
    satisfiedAfterInstall = lambda: monkeypatch.setattr(install, "isSatisfied", lambda r: True)  # noqa: E731
    installer = RecordingInstaller(satisfiedAfterInstall)
    logic = install.InstallLogic(requirements, lambda q: questions.append(q) or True, installer)

    assert logic.ensureDependencies()

    assert len(questions) == 1 and "PyTorch" in questions[0] and "surely-not-installed-pkg" in questions[0]
    assert installer.calls == [("torch", "torch>=2.2"), ("pip", ["surely-not-installed-pkg>=1"])]


def test_declining_installs_nothing_and_nothing_is_asked_when_all_is_there(requirements, monkeypatch):
    monkeypatch.setattr(install, "isSatisfied", lambda r: not r.startswith("surely"))
    installer = RecordingInstaller()
    assert not install.InstallLogic(requirements, lambda q: False, installer).ensureDependencies()
    assert installer.calls == []

    monkeypatch.setattr(install, "isSatisfied", lambda r: True)
    asked = []
    assert install.InstallLogic(requirements, asked.append, installer).ensureDependencies()
    assert asked == [] and installer.calls == []


def test_a_failed_install_says_what_is_still_missing(requirements, monkeypatch):
    monkeypatch.setattr(install, "isSatisfied", lambda r: not r.startswith("surely"))
    logic = install.InstallLogic(requirements, lambda q: True, RecordingInstaller())

    with pytest.raises(RuntimeError, match="still missing after the install: surely-not-installed-pkg"):
        logic.ensureDependencies()
