"""MongoStore's kept field statistics (``mongo_summaries``): the answer a read of every
point gives, after appends from several stores, out of order, across the cold tier,
and over blocks and chunks written before statistics were kept."""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import pytest

from ml_dash.records import ExperimentInfo
from ml_dash.stores import codec, mongo_summaries
from ml_dash.stores.generic_reads import fields_by_reading
from ml_dash.stores.mongo import MongoStore
from ml_dash.stores.mongo_metrics import stream_id

from .services import Place

OWNER, PROJECT = "alice", "sums"
RUNS = [f"{OWNER}/{PROJECT}/run-{k}" for k in range(2)]


def _points(start: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        value = math.cos(i * 0.61 + seed) * 10
        point: dict[str, Any] = {"loss": value, "step": i, "_ts": 1000.0 + i}
        if i % 13 == 5:
            point["loss"] = math.inf if i % 2 else math.nan
        if i % 7 == 0:
            point["acc"] = (i % 10) / 10  # a field only some points hold; ties for min and max
        out.append(point)
    return out


def _open(store: MongoStore) -> MongoStore:
    for k, prefix in enumerate(RUNS):
        store.open_experiment(ExperimentInfo(prefix=prefix, owner=OWNER, project=PROJECT, name=f"run-{k}"))
    return store


def _by_reading(store: MongoStore) -> dict[str, dict[str, Any]]:
    out = {}
    for prefix in RUNS:
        metrics = {}
        for stats in store.list_metrics(prefix):
            fields = fields_by_reading(store, prefix, stats["name"])
            fields.pop("_ts", None)
            metrics[stats["name"]] = fields
        out[prefix] = metrics
    return out


def _kept(store: MongoStore) -> dict[str, dict[str, Any]]:
    return {s.info.prefix: s.metrics for s in store.run_summaries(OWNER, PROJECT)}


def _counter(store: MongoStore, prefix: str, name: str) -> dict[str, Any]:
    return store.metric_tier.metrics.find_one({"_id": stream_id(prefix, name)}) or {}


def _current(doc: dict[str, Any]) -> bool:
    return doc.get("sv") == doc.get("sc") == doc.get("n")


def test_appends_keep_the_statistics_current_without_a_fold(place: Place) -> None:
    store = _open(place.store(bucket_size=100, chunk_size=1000))
    for start in range(0, 450, 70):
        store.append_metrics(RUNS[0], "train", _points(start, 70))
        assert _current(_counter(store, RUNS[0], "train"))
    store.set_params(RUNS[0], {"lr": 0.1, "model.depth": 18})
    want = _by_reading(store)
    got = _kept(place.store(bucket_size=100, chunk_size=1000))
    assert got == want
    assert got[RUNS[0]]["train"]["loss"]["nonFinite"] == sum(1 for i in range(490) if i % 13 == 5)
    listed = place.store(bucket_size=100, chunk_size=1000).run_summaries(OWNER, PROJECT)
    (first,) = [s for s in listed if s.info.prefix == RUNS[0]]
    assert first.params == {"lr": 0.1, "model.depth": 18}
    assert store.metric_fields(RUNS[0], "train") == fields_by_reading(store, RUNS[0], "train")
    assert store.metric_fields(RUNS[0], "nothing") == {}


def test_two_stores_appending_at_once_give_the_right_table(place: Place) -> None:
    one, two = _open(place.store(bucket_size=50, chunk_size=500)), place.store(bucket_size=50, chunk_size=500)
    errors: list[BaseException] = []

    def write(store: MongoStore, seed: int) -> None:
        try:
            for k in range(12):
                store.append_metrics(RUNS[k % 2], "train", _points(1000 * seed + 40 * k, 40, seed))
                store.append_metrics(RUNS[1], f"eval-{seed}", [{"acc": 0.1 * k + seed}])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(store, seed)) for seed, store in ((1, one), (2, two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    reader = place.store(bucket_size=50, chunk_size=500)
    want = _by_reading(reader)
    assert _kept(reader) == want
    assert want[RUNS[0]]["train"]["loss"]["count"] > 0 and want[RUNS[1]]["eval-2"]["acc"]["last"] == 0.1 * 11 + 2
    for prefix in RUNS:  # after the read every stream is current again
        assert _current(_counter(reader, prefix, "train"))


def test_a_write_that_lands_out_of_order_is_folded_at_the_next_read(place: Place) -> None:
    store = _open(place.store(bucket_size=100, chunk_size=1000))
    store.append_metrics(RUNS[0], "train", _points(0, 30))
    tier = store.metric_tier
    sid = stream_id(RUNS[0], "train")
    late = tier.ledger.reserve(sid, 20, None, {"exp": RUNS[0], "name": "train"})  # a slow writer's range
    store.append_metrics(RUNS[0], "train", _points(50, 25))  # lands first: the kept statistics stay behind
    assert not _current(_counter(store, RUNS[0], "train"))
    assert _kept(store)[RUNS[0]] == _by_reading(store)[RUNS[0]]  # the 20 missing points are not there yet
    assert not _current(_counter(store, RUNS[0], "train"))  # 55 points stored of 75 counted
    lines = codec.encode_metric_lines(_points(30, 20), late.first).split(b"\n")[:-1]
    tier._write_blocks(sid, late.first, lines, 0)  # the slow writer finishes (without its own update)
    got = _kept(store)[RUNS[0]]
    assert got == _by_reading(store)[RUNS[0]] and got["train"]["step"]["count"] == 75
    assert _current(_counter(store, RUNS[0], "train"))


@pytest.mark.parametrize("damage", ["garbage", "wrong shape", "behind"])
def test_damaged_kept_statistics_are_folded_again(place: Place, damage: str) -> None:
    store = _open(place.store())
    store.append_metrics(RUNS[1], "train", _points(0, 60))
    sid = stream_id(RUNS[1], "train")
    change = {"garbage": {"st": "{not json"}, "wrong shape": {"st": '{"loss": [1, 2]}'},
              "behind": {"sv": 10, "sc": 10}}[damage]
    store.metric_tier.metrics.update_one({"_id": sid}, {"$set": change})
    assert _kept(place.store()) == _by_reading(store)
    assert _current(_counter(store, RUNS[1], "train"))


def test_statistics_span_the_cold_tier_and_blocks_written_before_they_were_kept(place: Place) -> None:
    store = _open(place.store(bucket_size=100, chunk_size=300))
    for start in range(0, 1000, 90):
        store.append_metrics(RUNS[0], "train", _points(start, min(90, 1000 - start)))
    assert dict(store.metric_stats(RUNS[0], "train"))["coldDataPoints"] == 900
    want = _by_reading(store)
    assert _kept(store) == want
    # As a database written before statistics were kept: no block or chunk statistics,
    # no stream statistics.
    tier = store.metric_tier
    sid = stream_id(RUNS[0], "train")
    tier.buckets.update_many({"_id": {"$gte": f"{sid}:", "$lt": f"{sid};"}}, {"$unset": {"t": ""}})
    tier.manifests.update_many({"_id": {"$gte": f"{sid}:", "$lt": f"{sid};"}}, {"$unset": {"stats": ""}})
    tier.metrics.update_one({"_id": sid}, {"$unset": {"sv": "", "sc": "", "st": ""}})
    assert _kept(place.store(bucket_size=100, chunk_size=300)) == want
    store.append_metrics(RUNS[0], "train", _points(1000, 10))  # mixes old blocks and new ones in a bucket
    assert _kept(place.store(bucket_size=100, chunk_size=300)) == _by_reading(store)


def test_statistics_as_kept_merge_like_a_single_pass() -> None:
    points = [{"index": i, "data": p} for i, p in enumerate(_points(0, 200, 3))]
    whole = mongo_summaries.point_stats(points)
    cut = [0, 7, 8, 50, 133, 200]
    parts = [mongo_summaries.point_stats(points[a:b]) for a, b in itertools.pairwise(cut)]
    assert mongo_summaries.merge(parts) == whole
    assert mongo_summaries.from_text(mongo_summaries.to_text(whole)) == whole
