"""The backend takes a case of a multi-channel bundle (BraTS, 4 MR sequences) as one 4-D file, added by path
or uploaded, and refuses a single-channel volume naming the file and what the model takes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))  # the model-zoo fixtures' helper

from zoo_bundles import sphere_volume, zoo_bundle  # noqa: E402


def test_four_channel_cases_by_path_and_upload(tmp_path, server_factory):
    bundle = zoo_bundle(tmp_path, "brats_mri_segmentation")
    cases = tmp_path / "cases"
    stacked = sphere_volume(cases / "brats4d.nii.gz", channels=4)
    single = sphere_volume(cases / "t1.nii.gz")
    server = server_factory(tmp_path / "session", bundle, allow=(cases,))
    with server.client() as client:
        added = client.post("/cases", json={"path": str(stacked)})
        assert added.status_code == 200, added.text
        refused = client.post("/cases", json={"path": str(single)})
        assert refused.status_code == 422 and "1 channel per voxel; the model takes 4" in refused.text
        with open(single, "rb") as stream:
            upload = client.post("/cases/upload", files={"file": ("t1.nii.gz", stream)})
        assert upload.status_code == 422 and "the model takes 4" in upload.text
        image = client.get(f"/cases/{added.json()[0]['id']}/image")
        assert image.status_code == 200
