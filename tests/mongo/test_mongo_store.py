"""MongoStore specifics: bucket documents, concurrency across stores and processes, batch
ids, operator-looking keys, indexes and an unreachable MongoDB."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from ml_dash.errors import StorageError
from ml_dash.records import AppendResult, ExperimentInfo, LogRecord, StreamDescription
from ml_dash.stores.mongo_docs import description_from_doc
from ml_dash.stores.mongo_metrics import stream_id
from support.processes import child_env, free_port

from .services import Place, s3_credentials, start_mongo

PREFIX = "alice/mongo/run-1"


def info(prefix: str = PREFIX, **kw: Any) -> ExperimentInfo:
    owner, project, *folders, name = prefix.split("/")
    return ExperimentInfo(prefix=prefix, owner=owner, project=project, name=name, folders=tuple(folders), **kw)


def run_threads(count: int, target: Any) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(number: int) -> None:
        barrier.wait()
        try:
            target(number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_points_share_bucket_documents_a_thousand_at_a_time(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    for start in range(0, 2500, 100):
        store.append_metrics(PREFIX, "train", [{"step": i, "_ts": float(i)} for i in range(start, start + 100)])
    buckets = list(store.db["metric_buckets"].find().sort("_id", 1))
    assert [b["n"] for b in buckets] == [1000, 1000, 500]
    assert [len(b["p"]) for b in buckets] == [10, 10, 5]  # one pushed block per append and bucket
    assert store.metric_stats(PREFIX, "train")["totalDataPoints"] == 2500


def test_two_stores_appending_to_one_metric_get_unique_gapless_indexes(place: Place) -> None:
    stores = [place.store(chunk_size=100), place.store(chunk_size=100)]
    stores[0].open_experiment(info())
    firsts: list[tuple[int, int, int]] = []

    def write(number: int) -> None:
        for batch in range(25):
            first = stores[number].append_metrics(
                PREFIX, "train", [{"writer": number, "k": batch * 7 + j, "_ts": 1.0} for j in range(7)]
            )
            assert first.first is not None
            firsts.append((first.first, number, batch))

    run_threads(2, write)
    page = stores[0].read_metrics(PREFIX, "train", 0, 10_000)
    assert [p["index"] for p in page["data"]] == list(range(350))
    seen = sorted((p["data"]["writer"], p["data"]["k"]) for p in page["data"])
    assert seen == sorted((w, k) for w in range(2) for k in range(175))
    for first, number, batch in firsts:  # each batch got one contiguous range
        got = [p["data"]["k"] for p in page["data"][first : first + 7]]
        assert got == [batch * 7 + j for j in range(7)]
        assert {p["data"]["writer"] for p in page["data"][first : first + 7]} == {number}
    assert stores[1].metric_stats(PREFIX, "train").get("coldDataPoints") == 300


WORKER = """
import sys, json
from ml_dash.stores.mongo import MongoStore
from ml_dash.records import LogRecord
uri, db, bucket, endpoint, keys, number = sys.argv[1:7]
store = MongoStore(uri, db, bucket, s3_endpoint=endpoint, chunk_size=100, **json.loads(keys))
for batch in range(50):
    store.append_metrics("alice/mongo/run-1", "train",
                         [{"proc": int(number), "k": batch * 4 + j, "_ts": 1.0} for j in range(4)],
                         batch_id=f"p{number}-b{batch}")
    store.append_logs("alice/mongo/run-1", [LogRecord(1.0, "info", f"{number}-{batch}", None)])
store.close()
"""


def test_two_os_processes_appending_to_one_metric_get_unique_gapless_indexes(place: Place) -> None:
    store = place.store(chunk_size=100)
    store.open_experiment(info())
    argv = [place.svc.mongo_uri, place.database, place.bucket, place.svc.s3_endpoint, json.dumps(s3_credentials())]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, *argv, str(n)], env=child_env()) for n in range(2)]
    assert [proc.wait(timeout=300) for proc in procs] == [0, 0]
    page = store.read_metrics(PREFIX, "train", 0, 10_000)
    assert [p["index"] for p in page["data"]] == list(range(400))
    assert sorted((p["data"]["proc"], p["data"]["k"]) for p in page["data"]) == [
        (n, k) for n in range(2) for k in range(200)
    ]
    logs = store.query_logs(PREFIX, {"limit": 1000})["logs"]
    assert [line["sequenceNumber"] for line in logs] == list(range(100))
    assert store.metric_stats(PREFIX, "train").get("coldDataPoints") == 400


def test_a_batch_sent_twice_at_once_is_stored_once(place: Place) -> None:
    stores = [place.store(), place.store()]
    stores[0].open_experiment(info())
    for round_ in range(10):
        batch = [{"round": round_, "j": j, "_ts": 1.0} for j in range(5)]
        firsts: list[int | None] = []

        def send(
            n: int, batch: list[dict[str, Any]] = batch, round_: int = round_, firsts: list[int | None] = firsts
        ) -> None:
            firsts.append(stores[n].append_metrics(PREFIX, "train", batch, batch_id=f"same-{round_}").first)

        run_threads(2, send)
        assert firsts == [round_ * 5, round_ * 5]
    page = stores[0].read_metrics(PREFIX, "train", 0, 1000)
    assert [(p["data"]["round"], p["data"]["j"]) for p in page["data"]] == [(r, j) for r in range(10) for j in range(5)]


def test_a_batch_claimed_by_a_process_that_died_is_taken_over(place: Place) -> None:
    store = place.store(claim_wait=0.05)
    store.open_experiment(info())
    sid = stream_id(PREFIX, "train")
    store.db["batches"].insert_one({"_id": f"{sid}:orphan", "counter": sid, "count": 3, "first": None})
    batch = [{"j": j, "_ts": 1.0} for j in range(3)]
    assert store.append_metrics(PREFIX, "train", batch, batch_id="orphan") == AppendResult(0, 3, False)
    assert store.append_metrics(PREFIX, "train", batch, batch_id="orphan") == AppendResult(0, 3, True)
    assert store.read_metrics(PREFIX, "train", 0, 10)["total"] == 3


def test_a_resend_after_a_crash_before_the_points_were_written_stores_them_once(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    store.append_metrics(PREFIX, "train", [{"j": -1, "_ts": 1.0}])
    sid = stream_id(PREFIX, "train")
    store.metric_tier.ledger.reserve(sid, 4, "crashed", {"exp": PREFIX, "name": "train"})  # ...and died
    batch = [{"j": j, "_ts": 1.0} for j in range(4)]
    assert store.append_metrics(PREFIX, "train", batch, batch_id="crashed") == AppendResult(1, 4, True)
    assert store.append_metrics(PREFIX, "train", batch, batch_id="crashed") == AppendResult(1, 4, True)
    assert [p["data"]["j"] for p in store.read_metrics(PREFIX, "train", 0, 10)["data"]] == [-1, 0, 1, 2, 3]


def test_a_log_batch_sent_again_after_a_partial_write_is_completed_not_doubled(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    records = [LogRecord(float(i), "info", f"line {i}", {"i": i}) for i in range(6)]
    assert store.append_logs(PREFIX, records, batch_id="L") == AppendResult(0, 6, False)
    store.logs.delete_many({"seq": {"$gte": 3}})  # as if the process had died mid-insert
    assert store.append_logs(PREFIX, records, batch_id="L") == AppendResult(0, 6, True)
    assert [line["message"] for line in store.query_logs(PREFIX, {})["logs"]] == [f"line {i}" for i in range(6)]



def test_a_resent_track_batch_is_answered_as_duplicate_and_stored_once(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    entries = [{"timestamp": 1.0, "x": 1}, {"timestamp": 2.0, "x": 2}]
    assert store.append_tracks(PREFIX, "pos", entries, batch_id="T") == AppendResult(None, 2, False)
    assert store.append_tracks(PREFIX, "pos", entries, batch_id="T") == AppendResult(None, 2, True)
    assert store.append_tracks(PREFIX, "pos", [], batch_id="E") == AppendResult(None, 0, False)
    assert store.read_tracks(PREFIX, "pos") == entries


def test_describe_stream_replaces_the_streams_description_without_listing_an_empty_stream(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    store.describe_stream(PREFIX, "train/loss", StreamDescription("first", ("a",), {"k": 1}))
    store.describe_stream(PREFIX, "train/loss", StreamDescription("loss", ("b", "c"), {"$set": math.inf}))
    (doc,) = store.db["stream_descriptions"].find({"exp": PREFIX})
    assert (doc["_id"], doc["name"]) == (stream_id(PREFIX, "train/loss"), "train/loss")
    assert description_from_doc(doc) == StreamDescription("loss", ("b", "c"), {"$set": math.inf})
    assert store.list_metrics(PREFIX) == []

ODD_KEYS = {
    "$set": {"$inc": 1},
    "a.b": "$where",
    "$": ".",
    "x.$y": {"$gt": "", "a.b.c": [{"$push": 1}]},
    "": "empty key",
    "_id": "not an id",
    "nan": math.nan,
}


def test_keys_and_values_that_look_like_operators_round_trip_as_data(place: Place) -> None:
    prefix = "al.ice/$proj/sweep.$1/run.$x"
    store = place.store()
    store.open_experiment(info(prefix, tags=("$tag", "a.b"), metadata=dict(ODD_KEYS), description="$set"))
    store.set_params(prefix, dict(ODD_KEYS))
    store.set_params(prefix, {"$set": 2})
    store.append_metrics(prefix, "$loss.total", [{**ODD_KEYS, "_ts": 1.0}])
    store.append_logs(prefix, [LogRecord(1.0, "info", "$where: 1", dict(ODD_KEYS))])
    store.append_tracks(prefix, "$pose.x", [{"timestamp": 1.0, **ODD_KEYS}])
    other = place.store()
    for reader in (store, other):
        got = reader.get_experiment(prefix)
        assert got is not None
        assert (got.tags, got.description, json.dumps(got.metadata)) == (("$tag", "a.b"), "$set", json.dumps(ODD_KEYS))
        assert [i.prefix for i in reader.list_experiments(owner="al.ice", project="$proj")] == [prefix]
        assert json.dumps(reader.get_params(prefix).data) == json.dumps({**ODD_KEYS, "$set": 2})
        point = reader.read_metrics(prefix, "$loss.total", 0, 10)["data"][0]["data"]
        assert json.dumps(point) == json.dumps({**ODD_KEYS, "_ts": 1.0})
        assert [s["name"] for s in reader.list_metrics(prefix)] == ["$loss.total"]
        log = reader.query_logs(prefix, {"search": "$WHERE"})["logs"][0]
        assert json.dumps(log["metadata"]) == json.dumps(ODD_KEYS)
        assert json.dumps(reader.read_tracks(prefix, "$pose.x")) == json.dumps([{"timestamp": 1.0, **ODD_KEYS}])
        assert [t["topic"] for t in reader.list_tracks(prefix)] == ["$pose.x"]


def test_log_search_takes_regex_characters_literally(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    messages = ["loss a.b*c (x)", "loss aXbbc (x)", "^start$", "back\\slash"]
    store.append_logs(PREFIX, [LogRecord(1.0, "info", m, None) for m in messages])
    for search, expected in [("a.b*c (", [0]), ("^START$", [2]), ("\\s", [3]), ("(x)", [0, 1])]:
        found = store.query_logs(PREFIX, {"search": search})["logs"]
        assert [line["sequenceNumber"] for line in found] == expected, search


def test_logs_and_tracks_have_their_indexes(place: Place) -> None:
    store = place.store()
    store.open_experiment(info())
    store.append_logs(PREFIX, [LogRecord(1.0, "info", "x", None)])
    keys = {tuple(k for k, _ in spec["key"]) for spec in store.logs.index_information().values()}
    assert {("exp", "ts"), ("exp", "level", "ts"), ("exp", "seq")} <= keys
    track_keys = {tuple(k for k, _ in spec["key"]) for spec in store.tracks.index_information().values()}
    assert ("exp", "topic", "timestamp", "o") in track_keys


def test_an_unreachable_mongodb_raises_storage_error(place: Place) -> None:
    store = place.store(mongo_uri=f"mongodb://127.0.0.1:{free_port()}", timeout=0.5)
    began = time.monotonic()
    with pytest.raises(StorageError, match="MongoDB"):
        store.get_experiment(PREFIX)
    with pytest.raises(StorageError):
        store.append_metrics(PREFIX, "train", [{"x": 1, "_ts": 1.0}])
    print(f"unreachable MongoDB reported after {time.monotonic() - began:.2f} s (two calls)")


def test_a_mongodb_that_goes_away_raises_storage_error_and_recovers(place: Place) -> None:
    server = start_mongo(place.svc.workdir)
    try:
        store = place.store(mongo_uri=f"mongodb://127.0.0.1:{server.port}", timeout=1.0)
        store.open_experiment(info())
        server.stop()
        with pytest.raises(StorageError):
            store.append_metrics(PREFIX, "train", [{"x": 1, "_ts": 1.0}])
        server = start_mongo(place.svc.workdir, port=server.port)  # a new, empty server on the same port
        assert store.get_experiment(PREFIX) is None
        store.open_experiment(info())
        assert store.append_metrics(PREFIX, "train", [{"x": 1, "_ts": 1.0}]).first == 0
    finally:
        server.stop()
