"""How ``asfda serve`` refuses to start (in-process: both refusals come before any server is built)."""

from __future__ import annotations

from asfda.cli.main import main


def test_no_session_and_no_model_is_an_error(tmp_path, capsys):
    assert main(["serve", "--session", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    assert "--model" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_one_backend_a_session(small_server, capsys):
    assert main(["serve", "--session", str(small_server.session), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "another ASFDA backend" in error and str(small_server.process.pid) in error
    with small_server.client() as client:  # the first one is untouched
        assert client.get("/health").status_code == 200
