"""``ml-dash serve --mongo ... --s3 ...``: real server processes on the MongoDB and S3 test services.

Several servers on one database and bucket, a MongoDB that is unreachable or goes away
while an SDK client writes, tokens kept in MongoDB, and the options of the command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash import Experiment
from ml_dash.cli import main as cli_main
from ml_dash.errors import InvalidNameError, NotFoundError, StorageError
from ml_dash.server.mongo_auth import MongoTokenStore
from ml_dash.server.mongo_backend import MongoSettings, check_backend, redact
from ml_dash.stores.remote import RemoteStore
from support.processes import HANG_GUARD, ServerProcess, child_env, free_port, ml_dash, start

from .remote_backend import backend_args, mongo_server
from .services import REAL_MONGO_URI, LocalServer, Place, _tool, s3_env, start_mongo

PREFIX = "alice/serve/run-1"


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Servers a test starts (append to the list); all stopped at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start_all(servers: list[ServerProcess], *new: ServerProcess) -> list[ServerProcess]:
    """Start ``new`` servers side by side (their start-ups overlap) and wait for each."""
    servers.extend(new)
    for server in new:
        server.launch()
    for server in new:
        server.wait_ready()
    return list(new)


def indexes_and_points(url: str, name: str = "shared", api_key: str | None = None) -> list[dict[str, Any]]:
    store = RemoteStore(url, api_key=api_key)
    try:
        page = store.read_metrics(PREFIX, name, 0, 100_000)
    finally:
        store.close()
    return page["data"]


# -- several servers on one database and bucket -------------------------------------------


@pytest.mark.parametrize(
    ("writers", "points", "chunk"),
    [(4, 400, 100), pytest.param(8, 5000, 1000, marks=pytest.mark.slow, id="8x5000")],
)
def test_two_servers_on_one_database_give_every_client_point_one_index_and_read_alike(
    place: Place, servers: list[ServerProcess], tmp_path: Path, writers: int, points: int, chunk: int
) -> None:
    by_flags = mongo_server(*backend_args(place, chunk_size=chunk))
    by_env = mongo_server("--chunk-size", str(chunk), env={
        "ML_DASH_MONGO_URI": place.svc.mongo_uri,
        "ML_DASH_MONGO_DB": place.database,
        "ML_DASH_S3": f"s3://{place.bucket}/chunks",
        "ML_DASH_S3_ENDPOINT": place.svc.s3_endpoint,
    })
    start_all(servers, by_flags, by_env)
    for server in servers:
        assert httpx.get(f"{server.url}/health").json()["backend"] == "mongo"
        assert "multi-server" in server.stdout and place.database in server.stdout

    procs = [
        start("mongo/procs/remote_writer.py", "--url", servers[w % 2].url, "--prefix", PREFIX, "--worker", w,
              "--points", points, stdin=subprocess.PIPE, cwd=tmp_path)
        for w in range(writers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", proc.stderr
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        reports = [json.loads(proc.communicate(timeout=HANG_GUARD * 2)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert all(report["ok"] for report in reports), reports

    total = writers * points
    reads = [indexes_and_points(server.url) for server in servers]
    assert reads[0] == reads[1]
    data = reads[0]
    assert [p["index"] for p in data] == list(range(total))
    every = [(w, i) for w in range(writers) for i in range(points)]
    assert sorted((p["data"]["w"], p["data"]["i"]) for p in data) == every
    for w in range(writers):  # each client's batches arrive in order
        assert [p["data"]["i"] for p in data if p["data"]["w"] == w] == list(range(points))

    stats = [httpx.get(f"{s.url}/api/v1/metrics/stats", params={"prefix": PREFIX, "name": "shared"}).json()
             for s in servers]
    assert stats[0] == stats[1]
    assert stats[0]["totalDataPoints"] == total
    assert stats[0]["coldChunks"] >= 1 and stats[0]["coldDataPoints"] == chunk * stats[0]["coldChunks"]
    listed = place.svc.s3_client().list_objects_v2(Bucket=place.bucket, Prefix="chunks/")
    assert len(listed.get("Contents", ())) == stats[0]["coldChunks"]
    logs = httpx.get(f"{servers[1].url}/api/v1/logs", params={"prefix": PREFIX, "limit": 10_000}).json()
    assert [line["sequenceNumber"] for line in logs["logs"]] == list(range(writers * points // 100))


def test_servers_on_one_database_must_agree_on_the_chunk_size(place: Place) -> None:
    settings = MongoSettings(place.svc.mongo_uri, place.database, place.bucket, "chunks", place.svc.s3_endpoint, 100)
    store = place.store(chunk_size=100)
    assert check_backend(settings, store).warnings == []  # records 100 in the database
    assert check_backend(settings, store).warnings == []  # the same again is fine
    refused = ml_dash("serve", "--port", str(free_port()), *backend_args(place, chunk_size=200), check=False,
                      env=s3_env())
    assert refused.returncode == 2
    assert "--chunk-size 100" in refused.stderr


# -- an unreachable MongoDB ----------------------------------------------------------------


def test_a_server_whose_mongodb_is_unreachable_starts_and_answers_503_quickly(
    place: Place, servers: list[ServerProcess]
) -> None:
    dead = f"mongodb://127.0.0.1:{free_port()}"
    open_server = mongo_server(*backend_args(place, mongo_uri=dead))
    auth_server = mongo_server("--auth", *backend_args(place, mongo_uri=dead))
    start_all(servers, open_server, auth_server)
    assert "cannot reach MongoDB" in open_server.stderr
    assert httpx.get(f"{open_server.url}/health").json()["backend"] == "mongo"

    began = time.monotonic()
    answer = httpx.post(f"{open_server.url}/api/v1/experiment/open", json={"prefix": PREFIX}, timeout=HANG_GUARD)
    took = time.monotonic() - began
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == "storage_error" and set(body) == {"code", "message"}
    assert "27017" not in body["message"] and dead not in body["message"]  # details stay in the server log
    print(f"503 after {took:.2f} s")

    # With auth, a token MongoDB would have to confirm is a 503 (retry later), not a 401 (give up).
    token = {"authorization": "Bearer mld_0123456789_" + "x" * 43}
    answer = httpx.get(f"{auth_server.url}/api/v1/experiments", headers=token, timeout=HANG_GUARD)
    assert (answer.status_code, answer.json()["code"]) == (503, "storage_error")
    assert httpx.get(f"{auth_server.url}/api/v1/experiments", timeout=HANG_GUARD).status_code == 401


def start_file_mongo(workdir: Path, db_file: Path, port: int | None = None) -> LocalServer:
    """``nx-27017 --db FILE``: its data outlives a restart on the same file."""
    if _tool("nx-27017") is None:
        pytest.skip("nx-27017 is not installed")
    return start_mongo(workdir, port, db=str(db_file))


def wait_for(condition: Any, what: str, hang_guard: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + hang_guard
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {hang_guard} s (hang guard)")
        time.sleep(0.05)


@pytest.mark.skipif(REAL_MONGO_URI is not None, reason="stops and restarts its own MongoDB-protocol server")
def test_an_sdk_client_keeps_its_spool_through_a_mongodb_outage_and_nothing_is_lost_or_doubled(
    place: Place, servers: list[ServerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = start_file_mongo(place.svc.workdir, tmp_path / "mongo.db")
    try:
        uri = f"mongodb://127.0.0.1:{mongo.port}"
        (server,) = start_all(servers, mongo_server(*backend_args(place, mongo_uri=uri, chunk_size=100)))
        monkeypatch.chdir(tmp_path)
        spool = tmp_path / ".dash" / ".spool"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exp = Experiment(PREFIX, dash_url=server.url, flush_interval=0.01, close_timeout=120.0, echo=False)
            with exp.run:
                metric = exp.metrics("shared")
                for i in range(250):
                    metric.log(i=i)
                assert metric.stats()["totalDataPoints"] == 250  # delivered (a read waits for the spool)

                mongo.stop()
                began = time.monotonic()
                answer = httpx.get(f"{server.url}/api/v1/experiment", params={"prefix": PREFIX}, timeout=HANG_GUARD)
                assert (answer.status_code, answer.json()["code"]) == (503, "storage_error")
                print(f"503 after {time.monotonic() - began:.2f} s")

                for i in range(250, 600):
                    metric.log(i=i)
                    if i % 50 == 0:
                        exp.log(f"at {i}")
                wait_for(lambda: any("cannot deliver" in str(w.message) for w in caught), "the client saw the outage")
                assert list(spool.rglob("*.req")), "the client keeps what it could not send"

                mongo = start_file_mongo(place.svc.workdir, tmp_path / "mongo.db", port=mongo.port)
            report = exp.close_report
        assert report is not None and report.ok, str(report)
        assert not list(spool.rglob("*.req"))
        assert any("answers again" in str(w.message) for w in caught)

        data = indexes_and_points(server.url)
        assert sorted(p["data"]["i"] for p in data) == list(range(600))  # each point once
        assert [p["index"] for p in data] == list(range(600))
        assert [p["data"]["i"] for p in data] == list(range(600))  # in the order they were logged
        logs = httpx.get(f"{server.url}/api/v1/logs", params={"prefix": PREFIX, "limit": 100}).json()
        assert [line["message"] for line in logs["logs"]] == [f"at {i}" for i in range(250, 600, 50)]
        assert httpx.get(f"{server.url}/api/v1/experiment", params={"prefix": PREFIX}).json()["status"] == "COMPLETED"
    finally:
        mongo.stop()


# -- tokens in MongoDB ---------------------------------------------------------------------


def test_tokens_created_with_the_cli_in_mongodb_open_the_server_until_revoked(
    place: Place, servers: list[ServerProcess]
) -> None:
    mongo = ["--mongo", place.svc.mongo_uri, "--mongo-db", place.database]
    created = ml_dash("token", "create", "--owner", "alice", *mongo)
    token = created.stdout.strip()
    token_id = token.split("_")[1]
    assert place.database in created.stderr and "tokens" in created.stderr
    (server,) = start_all(servers, mongo_server("--auth", *backend_args(place)))
    assert "auth: ON" in server.stdout

    alice = RemoteStore(server.url, api_key=token)
    try:
        from ml_dash.errors import ForbiddenError, UnauthorizedError
        from ml_dash.records import ExperimentInfo

        alice.open_experiment(ExperimentInfo(PREFIX, "alice", "serve", "run-1"))
        assert alice.append_metrics(PREFIX, "m", [{"x": 1, "_ts": 1.0}]).first == 0
        with pytest.raises(ForbiddenError):
            alice.open_experiment(ExperimentInfo("bob/serve/run-1", "bob", "serve", "run-1"))

        by_env = {"ML_DASH_MONGO_URI": place.svc.mongo_uri, "ML_DASH_MONGO_DB": place.database}
        listed = [json.loads(line) for line in ml_dash("token", "list", "--json", env=by_env).stdout.splitlines()]
        assert [(t["id"], t["owner"], t["revokedAt"]) for t in listed] == [(token_id, "alice", None)]
        stored = place.store().db["tokens"].find_one({"_id": token_id}) or {}
        assert token not in json.dumps(stored, default=str) and token.split("_", 2)[2] not in str(stored)
        assert sorted(stored) == ["_id", "createdAt", "owner", "revokedAt", "sha256"]

        assert ml_dash("token", "revoke", token_id, *mongo).returncode == 0
        status = lambda: httpx.get(f"{server.url}/api/v1/experiments", headers={"authorization": f"Bearer {token}"})  # noqa: E731
        wait_for(lambda: status().status_code == 401, "the server refuses the revoked token")
        with pytest.raises(UnauthorizedError):
            alice.get_experiment(PREFIX)
        unknown = ml_dash("token", "revoke", "0000000000", *mongo, check=False)
        assert unknown.returncode == 2 and "no token" in unknown.stderr
    finally:
        alice.close()


def test_mongo_token_store_verifies_lists_and_revokes_across_instances(place: Place) -> None:
    db = place.store().db
    writer, server_side = MongoTokenStore(db), MongoTokenStore(db, refresh=0.05)
    try:
        token = writer.create("alice")
        assert server_side.verify(token) == "alice"  # not in its copy yet: looked up at once
        for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), token + "x", "mld_zz_secret", ""):
            assert server_side.verify(wrong) is None
        token_id = token.split("_")[1]
        assert [(r.id, r.owner, r.revoked) for r in writer.list()] == [(token_id, "alice", False)]
        writer.revoke(token_id)
        writer.revoke(token_id)  # again: still revoked, no error
        wait_for(lambda: server_side.verify(token) is None, "another instance sees the revoke")
        assert writer.list()[0].revoked
        with pytest.raises(NotFoundError):
            writer.revoke("ffffffffff")
        with pytest.raises(InvalidNameError):
            writer.create("../bob")
    finally:
        server_side.close()


@pytest.mark.skipif(REAL_MONGO_URI is not None, reason="stops its own MongoDB-protocol server")
def test_mongo_tokens_known_before_an_outage_keep_working_and_unknown_ones_are_a_storage_error(
    place: Place,
) -> None:
    mongo = start_mongo(place.svc.workdir)
    tokens = MongoTokenStore.connect(f"mongodb://127.0.0.1:{mongo.port}", place.database, timeout=0.5)
    try:
        token = tokens.create("alice")
        assert tokens.verify(token) == "alice"
        mongo.stop()
        assert tokens.verify(token) == "alice"  # from the in-memory copy
        with pytest.raises(StorageError):
            tokens.verify("mld_0123456789_" + "y" * 43)
        with pytest.raises(StorageError):
            tokens.create("alice")
    finally:
        tokens.close()
        mongo.stop()


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--root", "x", "--mongo", "mongodb://127.0.0.1:1"], "--root serves a folder"),
        (["serve", "--s3", "s3://some-bucket"], "need --mongo"),
        (["serve", "--mongo", "http://127.0.0.1:1"], "mongodb://"),
        (["serve", "--mongo", "mongodb://h", "--s3", "s3://Not_A_Bucket"], "not a valid S3 bucket"),
        (["serve", "--mongo", "mongodb://h", "--s3", "b3://bucket"], "expected s3://"),
        (["serve", "--mongo", "mongodb://h", "--chunk-size", "1500"], "multiple of 1000"),
        (["serve", "--mongo", "mongodb://h", "--mongo-db", "a.b"], "database name"),
        (["token", "list", "--root", "x", "--mongo", "mongodb://h"], "--root serves a folder"),
    ],
)
def test_malformed_or_conflicting_backend_options_are_refused_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_settings_fall_back_to_the_environment_and_hide_credentials() -> None:
    env = {"ML_DASH_MONGO_URI": "mongodb://u:secret@db.example:27017/team?authSource=admin",
           "ML_DASH_S3": "s3://ml-dash-chunks/prod/", "ML_DASH_S3_ENDPOINT": "http://minio:9000",
           "AWS_DEFAULT_REGION": "eu-west-1"}
    settings = MongoSettings.from_options(env=env)
    assert settings == MongoSettings("mongodb://u:secret@db.example:27017/team?authSource=admin", "team",
                                     "ml-dash-chunks", "prod", "http://minio:9000", 10_000, "eu-west-1")
    assert MongoSettings.from_options("mongodb://h/ignored", "chosen", env=env) == MongoSettings(
        "mongodb://h/ignored", "chosen", "ml-dash-chunks", "prod", "http://minio:9000", 10_000, "eu-west-1")
    assert MongoSettings.from_options(env={}) is None
    assert MongoSettings.from_options("mongodb://h", env={}) == MongoSettings("mongodb://h", "ml_dash")
    assert "secret" not in settings.describe() and "s3://ml-dash-chunks/prod" in settings.describe()
    assert redact("mongodb+srv://user:p%40ss@cluster/x") == "mongodb+srv://***@cluster/x"


def test_the_serve_help_says_which_backend_may_have_several_servers() -> None:
    text = " ".join(ml_dash("serve", "--help").stdout.split())
    assert "The folder backend is single-server" in text
    assert "several server processes may share them" in text
    options = ("--mongo URI", "--mongo-db NAME", "--s3 s3://BUCKET[/PREFIX]", "--s3-endpoint URL", "--chunk-size N")
    for option in options:
        assert option in text


BLOCKED = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pymongo", "boto3", "botocore", "bson"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocker())

import ml_dash, ml_dash.cli
from ml_dash.errors import StorageError
from ml_dash.server import serve
folder = serve._open(serve.plan(sys.argv[1], "127.0.0.1", 8000, False, False))
assert type(folder.store).__name__ == "LocalStore"
mongo = ml_dash.cli._mongo_settings(ml_dash.cli.build_parser().parse_args(["serve", "--mongo", "mongodb://h"]))
try:
    serve._open(serve.plan(None, "127.0.0.1", 8000, False, False, mongo=mongo))
except StorageError as exc:
    assert "pip install 'ml-dash[mongo]'" in str(exc), exc
else:
    raise AssertionError("opened MongoDB without pymongo")
print("ok")
"""


def test_the_package_and_the_folder_backend_need_neither_pymongo_nor_boto3(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKED, str(tmp_path / ".dash")], capture_output=True, text=True,
                          env=child_env(), timeout=HANG_GUARD)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_environment_selects_mongodb_unless_the_command_line_names_a_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ml_dash.cli import _mongo_settings, build_parser

    monkeypatch.setenv("ML_DASH_MONGO_URI", "mongodb://127.0.0.1:1")
    chosen = _mongo_settings(build_parser().parse_args(["serve"]))
    assert chosen is not None and chosen.uri == "mongodb://127.0.0.1:1"
    assert _mongo_settings(build_parser().parse_args(["serve", "--root", "somewhere"])) is None
