"""``GET /api/v1/tracks/read`` pages with ``limit`` and ``after`` (the real app, in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.app import PREFIX, app_client


def test_track_read_pages_by_limit_and_after_and_refuses_bad_values(tmp_path: Path) -> None:
    client, store = app_client(tmp_path / ".dash")
    try:
        assert client.post("/api/v1/experiment/open", json={"prefix": PREFIX}).status_code == 200
        entries = [{"timestamp": float(t), "x": t} for t in (4, 1, 3, 2, 2)]
        params = {"prefix": PREFIX, "topic": "pose"}
        response = client.post("/api/v1/tracks/append", params=params, json={"batchId": "b-1", "entries": entries})
        assert response.status_code == 200, response.text
        first = client.get("/api/v1/tracks/read", params={**params, "limit": 2})
        assert first.status_code == 200 and [e["timestamp"] for e in first.json()["entries"]] == [1.0, 2.0]
        rest = client.get("/api/v1/tracks/read", params={**params, "limit": 2, "after": 2.0, "columns": "x"})
        assert rest.json()["entries"] == [{"timestamp": 3.0, "x": 3}, {"timestamp": 4.0, "x": 4}]
        whole = client.get("/api/v1/tracks/read", params=params)  # no limit: everything, as before
        assert [e["timestamp"] for e in whole.json()["entries"]] == [1.0, 2.0, 3.0, 4.0]
        for bad in ({"limit": -1}, {"limit": 100_001}, {"limit": "many"}, {"after": "nan"}, {"after": "inf"}):
            refused = client.get("/api/v1/tracks/read", params={**params, **bad})
            assert refused.status_code in (400, 422), (bad, refused.text)
            assert refused.json()["code"] in ("bad_request", "invalid_value")
            assert "limit" in refused.json()["message"] or "after" in refused.json()["message"]
    finally:
        client.close()
        store.close()


@pytest.mark.parametrize("after", [None, 2.0])
def test_track_read_with_limit_zero_answers_no_entries(tmp_path: Path, after: float | None) -> None:
    client, store = app_client(tmp_path / ".dash")
    try:
        client.post("/api/v1/experiment/open", json={"prefix": PREFIX})
        params = {"prefix": PREFIX, "topic": "pose"}
        client.post("/api/v1/tracks/append", params=params, json={"batchId": "b", "entries": [{"timestamp": 3.0}]})
        query = {**params, "limit": 0, **({"after": after} if after is not None else {})}
        assert client.get("/api/v1/tracks/read", params=query).json()["entries"] == []
    finally:
        client.close()
        store.close()
