"""Tokens: the FileTokenStore, the 401/403 matrix over every route, and the token CLI."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash.errors import InvalidNameError, NotFoundError
from ml_dash.names import parse_prefix
from ml_dash.records import ExperimentInfo
from ml_dash.server import FileTokenStore
from ml_dash.stores.local import LocalStore
from support.app import AppClient, app_client, route_calls, snapshot
from support.processes import ml_dash

# -- FileTokenStore --------------------------------------------------------------------------


def test_a_created_token_verifies_as_its_owner(tmp_path: Path) -> None:
    tokens = FileTokenStore(tmp_path)
    token = tokens.create("alice")
    prefix, token_id, secret = token.split("_", 2)
    assert prefix == "mld" and len(token_id) == 10 and len(secret) >= 40
    assert tokens.verify(token) == "alice"
    assert [(r.id, r.owner, r.revoked) for r in tokens.list()] == [(token_id, "alice", False)]


def test_wrong_malformed_and_unknown_tokens_do_not_verify(tmp_path: Path) -> None:
    tokens = FileTokenStore(tmp_path)
    token = tokens.create("alice")
    token_id = token.split("_")[1]
    other_secret = FileTokenStore(tmp_path).create("alice").split("_", 2)[2]
    for candidate in (
        "",
        "mld_",
        token + "x",
        token[:-1],
        f"mld_{token_id}_{other_secret}",  # a real secret under the wrong id
        f"mld_ffffffffff_{other_secret}",  # unknown id
        "Bearer " + token,
        token.upper(),
        "x" * 10_000,
    ):
        assert tokens.verify(candidate) is None, candidate


def test_the_token_file_holds_hashes_only_with_mode_0600(tmp_path: Path) -> None:
    tokens = FileTokenStore(tmp_path)
    token = tokens.create("alice")
    path = tmp_path / ".ml-dash" / "tokens.json"
    text = path.read_text()
    assert token not in text and token.split("_", 2)[2] not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / ".ml-dash").stat().st_mode) == 0o700
    assert [sorted(entry) for entry in json.loads(text)["tokens"]] == [
        ["createdAt", "id", "owner", "revokedAt", "sha256"]
    ]


def test_revoking_a_token_takes_effect_for_a_store_that_already_read_the_file(tmp_path: Path) -> None:
    server_side = FileTokenStore(tmp_path)
    token = FileTokenStore(tmp_path).create("alice")
    assert server_side.verify(token) == "alice"
    FileTokenStore(tmp_path).revoke(token.split("_")[1])
    assert server_side.verify(token) is None
    assert server_side.list()[0].revoked


def test_revoking_an_unknown_id_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        FileTokenStore(tmp_path).revoke("0123456789")


@pytest.mark.parametrize("owner", ["", "a/b", "..", ".ml-dash", "a\x00b", "x" * 256, " alice"])
def test_owners_must_be_single_valid_names(tmp_path: Path, owner: str) -> None:
    with pytest.raises(InvalidNameError):
        FileTokenStore(tmp_path).create(owner)
    assert not (tmp_path / ".ml-dash" / "tokens.json").exists()


# -- the 401/403 matrix ----------------------------------------------------------------------

ALICE = "alice/proj/run-1"
BOB = "bob/proj/run-1"


ROUTES = [f"{method} {path}" for method, path, _, _ in route_calls(ALICE)]


@pytest.fixture
def auth_env(dash_root: Path) -> Iterator[dict[str, Any]]:
    """An app with auth over a root holding alice's and bob's experiments and tokens."""
    seed = LocalStore(dash_root)
    for prefix in (ALICE, BOB):
        p = parse_prefix(prefix)
        seed.open_experiment(ExperimentInfo(prefix=prefix, owner=p.owner, project=p.project, name=p.name))
        seed.append_metrics(prefix, "m", [{"v": 0, "_ts": 1.0}], batch_id="seed")
    seed.close()
    tokens = FileTokenStore(dash_root)
    alice = tokens.create("alice")
    revoked = tokens.create("alice")
    tokens.revoke(revoked.split("_")[1])
    client, store = app_client(dash_root, auth=True)
    yield {"client": client, "alice": alice, "revoked": revoked, "root": dash_root}
    client.close()
    store.close()


def send(client: AppClient, call: tuple[str, str, dict[str, Any], Any], headers: dict[str, str]) -> httpx.Response:
    method, path, query, body = call
    return client.request(method, path, params=query, json=body, headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("index", range(len(ROUTES)), ids=ROUTES)
def test_every_route_needs_a_valid_token_and_a_refused_call_changes_nothing(
    auth_env: dict[str, Any], index: int
) -> None:
    client: AppClient = auth_env["client"]
    root: Path = auth_env["root"]
    before = snapshot(root)
    unauthorised = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWxpY2U6cGFzcw=="},
        {"Authorization": auth_env["alice"]},  # no scheme
        bearer("mld_0000000000_" + "A" * 43),
        bearer(auth_env["revoked"]),
    ]
    for headers in unauthorised:
        response = send(client, route_calls(ALICE)[index], headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    forbidden = send(client, route_calls(BOB)[index], bearer(auth_env["alice"]))
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.json()["code"] == "forbidden"
    assert snapshot(root) == before
    allowed = send(client, route_calls(ALICE)[index], bearer(auth_env["alice"]))
    assert allowed.status_code == 200, allowed.text


def test_listing_with_a_token_shows_only_its_owner_and_refuses_other_owners(auth_env: dict[str, Any]) -> None:
    client: AppClient = auth_env["client"]
    headers = bearer(auth_env["alice"])
    listed = client.get("/api/v1/experiments", headers=headers).json()["experiments"]
    assert [e["prefix"] for e in listed] == [ALICE]
    assert client.get("/api/v1/experiments", params={"owner": "alice", "project": "proj"},
                      headers=headers).status_code == 200
    refused = client.get("/api/v1/experiments", params={"owner": "bob"}, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert client.get("/api/v1/experiments").status_code == 401


def test_health_and_openapi_need_no_token_and_openapi_declares_bearer_auth(auth_env: dict[str, Any]) -> None:
    client: AppClient = auth_env["client"]
    assert client.get("/health").status_code == 200
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/api/v1/params"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/health"]["get"]


def test_a_token_is_checked_before_the_request_is_parsed(auth_env: dict[str, Any]) -> None:
    client: AppClient = auth_env["client"]
    assert client.get("/api/v1/metrics/read").status_code == 401  # no prefix, no token: 401 first
    response = client.post("/api/v1/metrics/append", params={"prefix": ALICE, "name": "m"}, content=b"{bad",
                           headers={"content-type": "application/json"})
    assert response.status_code == 401


def test_without_auth_every_owner_goes(dash_root: Path) -> None:
    client, store = app_client(dash_root)
    try:
        for prefix in (ALICE, BOB):
            assert send(client, route_calls(prefix)[0], {}).status_code == 200
        assert send(client, route_calls(BOB)[0], bearer("garbage")).status_code == 200
    finally:
        client.close()
        store.close()


# -- the token CLI ---------------------------------------------------------------------------


def test_token_cli_creates_lists_and_revokes_without_showing_secrets(tmp_path: Path) -> None:
    root = tmp_path / "dash"
    created = ml_dash("token", "create", "--owner", "alice", "--root", str(root))
    token = created.stdout.strip()
    assert token.startswith("mld_") and "only time" in created.stderr
    token_id = token.split("_")[1]
    assert FileTokenStore(root).verify(token) == "alice"

    listed = ml_dash("token", "list", "--root", str(root))
    assert token_id in listed.stdout and "alice" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout
    as_json = [json.loads(line) for line in ml_dash("token", "list", "--json", "--root", str(root)).stdout.split()]
    assert [(r["id"], r["owner"], r["revokedAt"]) for r in as_json] == [(token_id, "alice", None)]

    ml_dash("token", "revoke", token_id, "--root", str(root))
    assert FileTokenStore(root).verify(token) is None
    assert json.loads(ml_dash("token", "list", "--json", "--root", str(root)).stdout)["revokedAt"] is not None

    unknown = ml_dash("token", "revoke", "ffffffffff", "--root", str(root), check=False)
    assert unknown.returncode != 0 and "no token" in unknown.stderr
    bad_owner = ml_dash("token", "create", "--owner", "../x", "--root", str(root), check=False)
    assert bad_owner.returncode != 0


def test_token_cli_uses_ml_dash_root_by_default(tmp_path: Path) -> None:
    env_root = tmp_path / "env-root"
    ml_dash("token", "create", "--owner", "alice", env={"ML_DASH_ROOT": str(env_root)})
    assert (env_root / ".ml-dash" / "tokens.json").is_file()
