"""The extension's files as Slicer's build and catalog read them, checked without a Slicer build tree.

CMake configures the real top-level ``CMakeLists.txt`` (and through it ``ASFDAModule/CMakeLists.txt``)
against ``FakeSlicer/``, a stand-in for the Slicer build tree that checks each macro call and writes what
was listed. Building and packaging need a real Slicer build tree and are not done here.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from module_paths import MODULE_DIR, ROOT, TESTING_DIR

CMAKE = shutil.which("cmake")
needsCMake = pytest.mark.skipif(
    CMAKE is None, reason="cmake is not installed, so the CMake files cannot be configured"
)
CATALOG_PROPERTIES = {
    "$schema",
    "category",
    "scm_url",
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "build_subdirectory",
    "enabled",
    "tier",
}  # schema v1.0.1, additionalProperties false
SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"


def configure(source: Path, build: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CMAKE,
            "-S",
            str(source),
            "-B",
            str(build),
            "-DBUILD_TESTING=ON",
            f"-DSlicer_DIR={TESTING_DIR / 'FakeSlicer'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> dict[str, list[str]]:
    if CMAKE is None:
        pytest.skip("cmake is not installed, so the CMake files cannot be configured")
    build = tmp_path_factory.mktemp("cmake-build")
    result = configure(ROOT, build)
    assert result.returncode == 0, result.stdout + result.stderr
    entries: dict[str, list[str]] = {}
    for line in (build / "asfda-manifest.txt").read_text().splitlines():
        kind, value = line.split(" ", 1)
        entries.setdefault(kind, []).append(value)
    return entries


@needsCMake
def test_the_module_lists_its_library_and_every_engine_file(manifest):
    library = {f"ASFDAModuleLib/{path.name}" for path in (MODULE_DIR / "ASFDAModuleLib").glob("*.py")}
    engine = {
        path.relative_to(MODULE_DIR).as_posix()
        for path in (MODULE_DIR / "asfda").rglob("*.py")
        if "__pycache__" not in path.parts
    }

    assert manifest["module"] == ["ASFDAModule"]
    assert set(manifest["script"]) == {"ASFDAModule.py"} | library | engine
    assert "asfda/server/__init__.py" in manifest["script"] and "asfda/__main__.py" in manifest["script"]
    assert set(manifest["resource"]) == {
        "Resources/Icons/ASFDAModule.png",
        "Resources/UI/ASFDAModule.ui",
        "Resources/requirements.txt",
    }
    assert manifest["generic-tests"] == ["ASFDAModule"] and manifest["unittest"] == ["ASFDAModule.py"]
    assert manifest["cpack"] == ["ASFDA"]


@needsCMake
def test_the_extension_metadata_names_its_category_and_the_pytorch_dependency(manifest):
    metadata = dict(entry.split("=", 1) for entry in manifest["metadata"])

    assert metadata["EXTENSION_CATEGORY"] == "Segmentation"
    assert metadata["EXTENSION_DEPENDS"] == "PyTorch"
    assert metadata["EXTENSION_ICONURL"].endswith("/Resources/ASFDA.png")
    assert "DKD" in metadata["EXTENSION_DESCRIPTION"] and "ASD" in metadata["EXTENSION_DESCRIPTION"]


def test_catalog_readiness_license_contributors_and_a_committed_screenshot():
    """ExtensionsIndex checks: a LICENSE, contributors as "Name (Organization)", screenshots that exist."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1)
    urls = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]*)"\)', cmake).group(1).split()
    prefix = "https://raw.githubusercontent.com/ASFDA/SlicerASFDA/main/"
    module = (MODULE_DIR / "ASFDAModule.py").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()

    assert (
        (ROOT / "LICENSE")
        .read_text()
        .lstrip()
        .startswith("Apache License\n                           Version 2.0")
    )
    assert 'license = "Apache-2.0"' in pyproject
    assert all(re.fullmatch(r"[^,()]+ \([^()]+\)", name.strip()) for name in contributors.split(","))
    assert f'self.parent.contributors = ["{contributors}"]' in module
    assert urls and all(url.startswith(prefix) for url in urls)
    for url in urls:
        picture = (ROOT / url[len(prefix) :]).read_bytes()
        assert picture[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", picture[16:24])[0] >= 600
    assert "not a screenshot of a" in (ROOT / "Resources" / "Screenshots" / "README.md").read_text().lower()


@needsCMake
def test_the_stand_in_rejects_a_listed_file_that_does_not_exist(tmp_path):
    """So that a passing configure means something: a missing script fails it, as in a real build."""
    source = tmp_path / "source"
    (source / "ASFDAModule").mkdir(parents=True)
    shutil.copy(ROOT / "CMakeLists.txt", source / "CMakeLists.txt")
    moduleCMake = (MODULE_DIR / "CMakeLists.txt").read_text()
    (source / "ASFDAModule" / "CMakeLists.txt").write_text(moduleCMake)

    result = configure(source, tmp_path / "build")

    assert result.returncode != 0
    assert "ASFDAModule.py does not exist" in result.stdout + result.stderr


def test_the_catalog_entry_fits_the_extensions_index_schema():
    entry = json.loads((ROOT / "ASFDAExtension" / "ASFDA.json").read_text())
    category = re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(
        1
    )

    assert set(entry) <= CATALOG_PROPERTIES
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["$schema"] == SCHEMA
    assert entry["build_dependencies"] == ["PyTorch"] and entry["build_subdirectory"] == "."
    assert entry["tier"] in (1, 3, 5) and entry["scm_type"] in ("git", "local")
    assert entry["category"] == category == "Segmentation"
    assert entry["scm_url"].startswith("https://") and entry["scm_revision"]


def test_the_catalog_entry_is_written_as_the_index_formatter_prints_it():
    """Defect: ``"build_dependencies": ["PyTorch"]`` on one line; the index's prettier (multiline-arrays
    plugin, wrap threshold 0) prints every non-empty array one item a line, two spaces, a final newline."""
    text = (ROOT / "ASFDAExtension" / "ASFDA.json").read_text()

    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert '"build_dependencies": [\n    "PyTorch"\n  ],' in text


def pngText(path: Path) -> dict[str, str]:
    """The PNG's tEXt chunks (keyword -> text)."""
    data, texts, offset = path.read_bytes(), {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"tEXt":
            keyword, _, value = data[offset + 8 : offset + 8 + length].partition(b"\0")
            texts[keyword.decode("latin-1")] = value.decode("latin-1")
        offset += 12 + length
    return texts


def test_the_homepage_names_the_licence_links_the_paper_and_says_what_it_does_in_plain_words():
    """Defect: the README named neither the licence nor linked the paper; the description began with the
    method's name ("Active source-free domain adaptation") instead of what it does for a radiologist."""
    readme = (ROOT / "README.md").read_text()
    intro = readme[: readme.index("\n## ")]
    cmake = (ROOT / "CMakeLists.txt").read_text()
    description = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]+)"\)', cmake).group(1)
    firstSentence = description.split(". ")[0]

    assert "[Apache License 2.0](LICENSE)" in intro
    assert "(https://arxiv.org/abs/2509.10784)" in intro and "Yang, Marcus & Sotiras" in intro
    assert re.search(r"\bscans?\b", firstSentence) and "correct" in firstSentence
    assert not re.search(r"\b(DKD|ASD|ASFDA)\b|domain adaptation", firstSentence)
    assert "DKD" in description and "ASD" in description  # the method's terms, after the plain words


def test_contributors_name_one_organisation_alike_in_the_module_cmake_and_catalog_url():
    """Defect: "ASFDA developers (ASFDA project)" named neither people nor an organisation the catalog entry
    knows; now the organisation that owns scm_url, named alike in the module and the CMake file."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1)
    module = (MODULE_DIR / "ASFDAModule.py").read_text()
    owner = json.loads((ROOT / "ASFDAExtension" / "ASFDA.json").read_text())["scm_url"].split("/")[3]
    homepageOwner = re.search(r'set\(EXTENSION_HOMEPAGE "https://github.com/([^/]+)/', cmake).group(1)

    assert f'self.parent.contributors = ["{contributors}"]' in module
    assert re.fullmatch(rf"[^,()]+ \({re.escape(owner)} organisation on GitHub\)", contributors)
    assert homepageOwner == owner


def test_the_picture_is_labelled_as_not_a_slicer_screenshot_and_the_submission_gaps_are_listed():
    """Defect: the catalog shows the picture without a caption, and nothing in it said it is no screenshot;
    the packaging notes did not say what only the publishing repository can give."""
    picture = ROOT / "Resources" / "Screenshots" / "ASFDA-prediction-T2.png"
    script = (ROOT / "Resources" / "Screenshots" / "make_screenshot.py").read_text()
    notes = (ROOT / "ASFDAExtension" / "README.md").read_text()
    publishing = notes[notes.index("### What only the publishing repository can give") :]

    assert "not a screenshot of 3D Slicer" in pngText(picture)["Description"]
    assert "{LABEL}" in script and 'metadata={"Description": LABEL}' in script  # drawn into the picture
    assert "`3d-slicer-extension`" in publishing and "public clone url" in publishing.lower()
    assert "scm_url" in publishing and "real screenshot" in publishing.lower()


def test_the_ui_file_has_every_widget_the_module_uses_and_binds_only_real_parameters():
    ui = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "ASFDAModule.ui")
    widgets = {widget.get("name") for widget in ui.iter("widget")}
    # The Widget's wiring is in the module file, what its buttons do in the Lib's mixins.
    widgetFiles = [MODULE_DIR / "ASFDAModule.py", *sorted((MODULE_DIR / "ASFDAModuleLib").glob("*.py"))]
    parameterSource = (MODULE_DIR / "ASFDAModuleLib" / "Parameters.py").read_text()
    used = {name for path in widgetFiles for name in re.findall(r"self\.ui\.(\w+)", path.read_text())}
    bound = {
        prop.findtext("string") for prop in ui.iter("property") if prop.get("name") == "SlicerParameterName"
    }

    assert ui.getroot().find("widget").get("class") == "qMRMLWidget"
    assert used <= widgets, f"widgets missing in the .ui file: {sorted(used - widgets)}"
    assert bound <= parameterNames(parameterSource), (
        f"unknown parameters: {bound - parameterNames(parameterSource)}"
    )
    assert {"device", "backendUrl", "fineTuneSteps", "annotatorName"} <= bound
    # Path fields are not bound: an unset pathlib.Path parameter would show as "."; the Widget copies them.
    pathFields = {w.get("name") for w in ui.iter("widget") if w.get("class") == "ctkPathLineEdit"}
    assert pathFields == {"sessionFolderPathLineEdit", "modelPathLineEdit", "dataFolderPathLineEdit"}
    assert not bound & {"sessionFolder", "modelPath", "dataFolder"}
    assert {
        "segmentEditorWidget",
        "saveAndNextButton",
        "saveWithoutTrainingButton",
        "skipButton",
        "flagButton",
        "activateVersionButton",
        "labelledProgressBar",
        "scoringProgressBar",
        "cancelScoringButton",
    } <= used


def parameterNames(moduleSource: str) -> set[str]:
    tree = ast.parse(moduleSource)
    parameterClass = next(
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == "ASFDAModuleParameterNode"
    )
    return {node.target.id for node in parameterClass.body if isinstance(node, ast.AnnAssign)}


@pytest.mark.parametrize("icon", ["ASFDAModule/Resources/Icons/ASFDAModule.png", "Resources/ASFDA.png"])
def test_icons_are_128_pixel_pngs(icon):
    data = (ROOT / icon).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)


def test_the_layout_is_the_extension_wizard_one():
    expected = [
        "ASFDAExtension/ASFDA.json",
        "ASFDAExtension/README.md",
        "ASFDAModule/ASFDAModule.py",
        "ASFDAModule/CMakeLists.txt",
        "ASFDAModule/Resources/requirements.txt",
        "CMakeLists.txt",
        "Resources/Screenshots/README.md",
        "Testing/requirements-slicer.txt",
    ]
    assert [path for path in expected if not (ROOT / path).is_file()] == []
