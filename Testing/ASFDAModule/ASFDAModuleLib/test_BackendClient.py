"""The HTTP client against small servers on 127.0.0.1: the token header, the contract, and errors."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ASFDAModuleLib.BackendClient import BackendClient, BackendError, BackendUnreachableError
from ASFDAModuleLib.BackendTypes import CaseStatus, JobState
from module_fake_backend import TOKEN


@pytest.fixture
def client(fakeBackend):
    return BackendClient(fakeBackend.url, TOKEN, timeout=5)


@pytest.fixture
def volumeFile(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8))
    image.SetSpacing((0.8, 0.9, 2.0))
    path = tmp_path / "upload me.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def test_every_request_carries_the_bearer_token(client, fakeBackend):
    assert client.health()
    client.info()
    assert {auth for _, _, auth in fakeBackend.state.requests} == {f"Bearer {TOKEN}"}
    assert TOKEN not in repr(client)


def test_a_wrong_token_is_an_error_with_the_server_detail(fakeBackend):
    with pytest.raises(BackendError) as raised:
        BackendClient(fakeBackend.url, "wrong", timeout=5).health()
    assert raised.value.status == 401
    assert raised.value.detail == "missing or wrong token"
    assert str(raised.value) == "GET /health failed (401): missing or wrong token"


def test_cases_by_path_by_upload_and_the_files_of_a_case(client, fakeBackend, volumeFile, tmp_path):
    inside = fakeBackend.state.session / "imports" / "inside.nii.gz"
    inside.parent.mkdir()
    inside.write_bytes(volumeFile.read_bytes())

    [added] = client.addCaseFile(inside)
    uploaded = client.uploadCase(volumeFile)
    info = client.info()
    image = client.downloadImage(uploaded.id, tmp_path / "down" / "image.nii.gz")
    prediction = client.downloadPrediction(uploaded.id, tmp_path / "down" / "prediction.nii.gz")

    assert added.status is CaseStatus.UNLABELLED and added.sourcePath == str(inside)
    assert uploaded.name == "upload me" and uploaded.id != added.id
    assert [c.id for c in client.cases()] == [added.id, uploaded.id]
    assert info.labels == {0: "background", 1: "liver", 2: "spleen"}
    assert image.read_bytes()[:2] == b"\x1f\x8b" and prediction.stat().st_size > 0
    assert not list((tmp_path / "down").glob("*.part"))


def test_a_path_outside_the_session_is_refused_with_the_reason(client, volumeFile):
    with pytest.raises(BackendError, match=r"POST /cases failed \(403\): .*upload me.nii.gz is outside"):
        client.addCaseFile(volumeFile)


def test_ranking_next_label_and_a_fine_tuning_round(client, fakeBackend, volumeFile, tmp_path):
    case = client.uploadCase(volumeFile)
    ranking = client.ranking()
    served = client.nextCase("annotator 1")
    label = client.downloadPrediction(served.id, tmp_path / "label.nii.gz")
    labelled = client.submitLabel(served.id, label)
    job = client.startFineTuning(steps=5)
    with pytest.raises(BackendError) as running:
        client.startFineTuning()
    while not job.state.finished:
        time.sleep(0.05)
        job = client.job(job.id)

    assert ranking.nextCaseId == case.id and ranking.modelVersion == "v0"
    assert served.id == case.id and served.status is CaseStatus.SUGGESTED
    assert labelled.status is CaseStatus.LABELLED
    assert running.value.status == 409
    assert job.state is JobState.DONE and job.modelVersion == "v1"
    assert [m.round for m in client.metrics()] == [1]
    assert client.jobs is not None  # the method exists for the contract's GET /jobs


def test_ranking_without_waiting_and_removing_a_case(client, fakeBackend, volumeFile):
    """GET /ranking?wait=false answers at once with the scoring job; DELETE /cases/{id} removes a case."""
    fakeBackend.state.scoringSeconds = 1.0
    case = client.uploadCase(volumeFile)

    started = time.monotonic()
    ranking = client.ranking(wait=False)
    seconds = time.monotonic() - started
    removed = client.removeCase(case.id)
    with pytest.raises(BackendError, match=r"DELETE /cases/case-1 failed \(404\)"):
        client.removeCase(case.id)

    assert seconds < 0.5 and not ranking.complete and ranking.job.kind.value == "score"
    assert ranking.nextCaseId is None and [c.score for c in ranking.cases] == [None]
    assert ("GET", "/ranking", f"Bearer {TOKEN}") in fakeBackend.state.requests
    assert removed.id == case.id and client.cases() == []


class _ScriptedHandler(BaseHTTPRequestHandler):
    """Answers every request with what the test put in ``reply`` (status, body), after ``delay`` seconds."""

    reply = (200, b"{}")
    delay = 0.0

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(self.delay)
        status, body = self.reply
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted():
    class Handler(_ScriptedHandler):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    yield Handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "reply, message",
    [
        (
            (404, json.dumps({"detail": "no case 'x7'"}).encode()),
            "GET /cases/x7/image failed (404): no case 'x7'",
        ),
        (
            (422, json.dumps({"detail": [{"msg": "field required"}, {"msg": "bad format"}]}).encode()),
            "failed (422): field required; bad format",
        ),
        ((500, b"Internal Server Error"), "failed (500): Internal Server Error"),
    ],
)
def test_error_answers_carry_the_server_explanation(scripted, tmp_path, reply, message):
    handler, url = scripted
    handler.reply = reply
    with pytest.raises(BackendError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BackendClient(url, TOKEN).downloadImage("x7", tmp_path / "image.nii.gz")
    assert not list(tmp_path.iterdir())  # no half-written file


def test_an_answer_that_is_not_json_is_an_error(scripted):
    handler, url = scripted
    handler.reply = (200, b"<html>proxy login</html>")
    with pytest.raises(BackendError, match="not JSON"):
        BackendClient(url, TOKEN).cases()


def test_no_backend_and_a_hung_backend_are_unreachable(scripted):
    handler, url = scripted
    handler.delay = 1.0
    with pytest.raises(BackendUnreachableError, match="no answer from"):
        BackendClient(url, TOKEN, timeout=0.2).health()
    with pytest.raises(BackendUnreachableError, match="no answer from http://127.0.0.1:9"):
        BackendClient("http://127.0.0.1:9", TOKEN, timeout=2).health()


def test_client_from_the_server_file(tmp_path):
    serverFile = tmp_path / "server.json"
    serverFile.write_text(json.dumps({"url": "http://127.0.0.1:5555/", "port": 5555, "token": "t", "pid": 1}))
    client = BackendClient.fromServerFile(serverFile)
    assert (client.url, client.token) == ("http://127.0.0.1:5555", "t")
