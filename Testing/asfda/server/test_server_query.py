"""The query strategy is chosen over the API, kept in the session, and refused when unknown."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_the_query_strategy_is_chosen_and_kept(small_server):
    with small_server.client() as client:
        before = client.get("/query").json()
        assert {"asfda", "random", "epistemic", "typical-stochastic"} <= set(before["strategies"])
        try:
            refused = client.put("/query", json={"strategy": "most-interesting"})
            assert refused.status_code == 422
            assert client.put("/query", json={"budget": 0}).status_code == 422
            chosen = client.put("/query", json={"strategy": "random", "budget": 2})
            assert chosen.status_code == 200, chosen.text
            assert (chosen.json()["strategy"], chosen.json()["budget"]) == ("random", 2)
            assert client.get("/query").json()["strategy"] == "random"
            stored = json.loads((small_server.session / "session.json").read_text())["query"]
            assert (stored["strategy"], stored["budget"]) == ("random", 2)
        finally:
            client.put("/query", json={"strategy": before["strategy"], "budget": before["budget"]})
        assert client.get("/query").json()["strategy"] == before["strategy"]
