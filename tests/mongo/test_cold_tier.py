"""The S3 cold tier of MongoStore: chunk moves, merged reads, outages and crashed moves."""

from __future__ import annotations

import math
import struct
import threading
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_dash.errors import StorageError
from ml_dash.records import AppendResult, ExperimentInfo
from ml_dash.stores import chunk_codec
from ml_dash.stores.mongo import MongoStore
from ml_dash.stores.mongo_metrics import stream_id
from support.processes import free_port

from .services import Place, start_s3

PREFIX = "alice/cold/run-1"


def opened(store: MongoStore) -> MongoStore:
    store.open_experiment(ExperimentInfo(prefix=PREFIX, owner="alice", project="cold", name="run-1"))
    return store


def points(start: int, n: int) -> list[dict[str, Any]]:
    return [{"step": i, "loss": 1.0 / (i + 1), "_ts": 1000.0 + i} for i in range(start, start + n)]


def append_in_batches(store: MongoStore, total: int, batch: int, name: str = "train") -> None:
    for start in range(0, total, batch):
        store.append_metrics(PREFIX, name, points(start, min(batch, total - start)))


def steps(store: MongoStore, start: int = 0, limit: int = 1_000_000, name: str = "train") -> list[int]:
    page = store.read_metrics(PREFIX, name, start, limit)
    assert [p["index"] for p in page["data"]] == [p["data"]["step"] for p in page["data"]]
    return [p["index"] for p in page["data"]]


def objects(place: Place) -> list[str]:
    listed = place.svc.s3_client().list_objects_v2(Bucket=place.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", ()))


def hot_indexes(store: MongoStore, name: str = "train") -> list[int]:
    sid = stream_id(PREFIX, name)
    found = store.metric_tier._hot_points(sid, 0, 1 << 40)
    return sorted(found)


def test_a_full_chunk_moves_to_one_s3_object_with_a_manifest(place: Place) -> None:
    store = opened(place.store(chunk_size=100))
    append_in_batches(store, 250, 30)
    assert objects(place) == [f"{PREFIX}/train/chunk-000000000000", f"{PREFIX}/train/chunk-000000000100"]
    manifests = list(store.db["metric_chunks"].find().sort("first", 1))
    assert [(m["first"], m["last"], m["count"]) for m in manifests] == [(0, 99, 100), (100, 199, 100)]
    fields = {f["k"]: f for f in manifests[1]["fields"]}
    assert fields["step"] == {"k": "step", "count": 100, "min": 100, "max": 199}
    assert (fields["_ts"]["min"], fields["_ts"]["max"]) == (1100.0, 1199.0)
    assert (manifests[1]["minTs"], manifests[1]["maxTs"], manifests[1]["firstTs"], manifests[1]["lastTs"]) == (
        1100.0, 1199.0, 1100.0, 1199.0)
    assert hot_indexes(store) == list(range(200, 250))
    stats = store.metric_stats(PREFIX, "train")
    assert (stats["totalDataPoints"], stats.get("hotDataPoints"), stats.get("coldDataPoints")) == (250, 50, 200)
    assert (stats["firstDataAt"], stats["lastDataAt"]) == (1000.0, 1249.0)


def test_reads_across_the_hot_cold_boundary_are_complete_and_in_order(place: Place) -> None:
    store = opened(place.store(chunk_size=100, bucket_size=20))
    append_in_batches(store, 345, 7)
    assert steps(store) == list(range(345))
    for start, limit in [(0, 1), (95, 10), (99, 2), (150, 100), (190, 30), (290, 100), (299, 1), (300, 45), (344, 5)]:
        assert steps(store, start, limit) == list(range(start, min(start + limit, 345))), (start, limit)
    page = store.read_metrics(PREFIX, "train", 195, 10)
    assert (page["startIndex"], page["endIndex"], page["total"], page["hasMore"]) == (195, 204, 345, True)
    assert page["data"][0]["data"] == {"step": 195, "loss": 1.0 / 196, "_ts": 1195.0}


def test_a_read_fetches_only_the_frames_it_needs(place: Place) -> None:
    store = opened(place.store(chunk_size=100, bucket_size=20))
    append_in_batches(store, 200, 50)
    ranges: list[str] = []
    client = store.metric_tier.chunks.client  # type: ignore[union-attr]
    client.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: ranges.append(params["headers"]["Range"])
    )
    assert steps(store, 125, 10) == list(range(125, 135))
    assert steps(store, 135, 10) == list(range(135, 145))
    manifest = store.db["metric_chunks"].find_one({"first": 100})
    assert manifest is not None
    offsets = manifest["offsets"]
    assert ranges == [f"bytes={offsets[1]}-{offsets[2] - 1}", f"bytes={offsets[1]}-{offsets[3] - 1}"]


def test_the_default_chunk_of_10000_points_moves_after_10000_points(place: Place) -> None:
    store = opened(place.store())
    append_in_batches(store, 10_500, 1000)
    assert objects(place) == [f"{PREFIX}/train/chunk-000000000000"]
    stats = store.metric_stats(PREFIX, "train")
    assert (stats["totalDataPoints"], stats.get("hotDataPoints"), stats.get("coldDataPoints")) == (10_500, 500, 10_000)
    assert steps(store, 9990, 20) == list(range(9990, 10_010))
    assert store.db["metric_buckets"].count_documents({}) == 1


def test_odd_values_and_keys_survive_the_cold_tier(place: Place) -> None:
    odd = {"nan": math.nan, "inf": math.inf, "big": 2**100, "neg": -(2**70), "$set": {"a.b": -math.inf},
           "a.b": "$inc", "none": None, "flag": True, "list": [1.5, math.nan]}
    store = opened(place.store(chunk_size=10))
    store.append_metrics(PREFIX, "odd", [{**odd, "_ts": float(i)} for i in range(25)])
    assert store.metric_stats(PREFIX, "odd").get("coldDataPoints") == 20
    for point in store.read_metrics(PREFIX, "odd", 0, 100)["data"]:
        data = dict(point["data"])
        assert data.pop("_ts") == float(point["index"])
        assert _bits(data) == _bits(odd)


def test_s3_unreachable_keeps_points_hot_and_a_later_move_succeeds(place: Place) -> None:
    dead = place.store(chunk_size=100, s3_endpoint=f"http://127.0.0.1:{free_port()}", timeout=0.5)
    opened(dead)
    with pytest.warns(RuntimeWarning, match="stay in MongoDB"):
        append_in_batches(dead, 250, 50)
    assert objects(place) == []
    stats = dead.metric_stats(PREFIX, "train")
    assert (stats["totalDataPoints"], stats.get("hotDataPoints"), stats.get("coldDataPoints")) == (250, 250, 0)
    assert steps(dead) == list(range(250))

    alive = place.store(chunk_size=100)
    assert alive.move_full_chunks(PREFIX, "train") == 2
    assert len(objects(place)) == 2
    assert steps(alive) == list(range(250))
    assert hot_indexes(alive) == list(range(200, 250))
    with pytest.raises(StorageError):
        dead.read_metrics(PREFIX, "train", 0, 10)  # cold data is not silently missing
    assert steps(dead, 200, 50) == list(range(200, 250))  # the hot tail needs no S3


def test_a_missing_bucket_is_retried_on_a_later_append(place: Place) -> None:
    late_bucket = place.bucket + "-late"
    store = opened(place.store(chunk_size=100, s3_bucket=late_bucket, retry_after=0.0))
    with pytest.warns(RuntimeWarning, match="NoSuchBucket"):
        append_in_batches(store, 150, 50)
    assert store.metric_stats(PREFIX, "train").get("coldDataPoints") == 0
    client = place.svc.s3_client()
    client.create_bucket(Bucket=late_bucket)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            store.append_metrics(PREFIX, "train", points(150, 1))
        stats = store.metric_stats(PREFIX, "train")
        assert (stats["totalDataPoints"], stats.get("coldDataPoints")) == (151, 100)
        assert steps(store) == list(range(151))
    finally:
        for item in client.list_objects_v2(Bucket=late_bucket).get("Contents", ()):
            client.delete_object(Bucket=late_bucket, Key=item["Key"])
        client.delete_bucket(Bucket=late_bucket)


def test_an_s3_server_that_stops_and_comes_back_gets_the_chunk_later(place: Place) -> None:
    s3 = start_s3(place.svc.workdir)
    endpoint = f"http://127.0.0.1:{s3.port}"
    try:
        store = opened(place.store(chunk_size=100, s3_endpoint=endpoint, retry_after=0.0, timeout=1.0))
        client = store.metric_tier.chunks.client  # type: ignore[union-attr]
        client.create_bucket(Bucket=place.bucket)
        append_in_batches(store, 50, 25)
        s3.stop()
        with pytest.warns(RuntimeWarning, match="stay in MongoDB"):
            for start in (50, 100):  # 0..99 is full, S3 is down
                store.append_metrics(PREFIX, "train", points(start, 50))
            assert store.metric_stats(PREFIX, "train").get("hotDataPoints") == 150
            assert steps(store) == list(range(150))  # reads retry the move too (retry_after=0)

        s3 = start_s3(place.svc.workdir, port=s3.port)  # back (empty: moto keeps objects in memory)
        client.create_bucket(Bucket=place.bucket)
        store.append_metrics(PREFIX, "train", points(150, 1))
        stats = store.metric_stats(PREFIX, "train")
        assert (stats["totalDataPoints"], stats.get("hotDataPoints"), stats.get("coldDataPoints")) == (151, 51, 100)
        assert steps(store) == list(range(151))
        listed = client.list_objects_v2(Bucket=place.bucket).get("Contents", ())
        assert [item["Key"] for item in listed] == [f"{PREFIX}/train/chunk-000000000000"]
    finally:
        s3.stop()


def _full_hot_chunk(place: Place) -> MongoStore:
    """A store whose stream holds one full chunk (0..99) still hot, plus 100..109."""
    blocked = place.store(chunk_size=100, s3_bucket=place.bucket + "-absent", retry_after=3600.0)
    opened(blocked)
    with pytest.warns(RuntimeWarning):
        append_in_batches(blocked, 110, 55)
    return place.store(chunk_size=100)


def test_a_crash_between_s3_put_and_manifest_is_recovered_by_the_next_append(place: Place) -> None:
    store = _full_hot_chunk(place)
    sid = stream_id(PREFIX, "train")
    assert store.metric_tier.write_chunk_object(PREFIX, "train", sid, 0) is not None  # ...and the process died
    assert len(objects(place)) == 1
    assert store.db["metric_chunks"].count_documents({}) == 0
    assert steps(store) == list(range(110))

    store.append_metrics(PREFIX, "train", points(110, 1))
    assert objects(place) == [f"{PREFIX}/train/chunk-000000000000"]
    assert store.db["metric_chunks"].count_documents({}) == 1
    assert hot_indexes(store) == list(range(100, 111))
    assert steps(store) == list(range(111))


def test_a_crash_between_manifest_and_hot_delete_is_recovered_by_the_next_read(place: Place) -> None:
    store = _full_hot_chunk(place)
    sid = stream_id(PREFIX, "train")
    written = store.metric_tier.write_chunk_object(PREFIX, "train", sid, 0)
    assert written is not None
    store.metric_tier.write_manifest(PREFIX, "train", sid, 0, *written)  # ...and the process died
    assert hot_indexes(store) == list(range(110))  # the moved points are still hot too
    stats = store.metric_stats(PREFIX, "train")
    assert (stats["totalDataPoints"], stats.get("hotDataPoints"), stats.get("coldDataPoints")) == (110, 10, 100)

    assert steps(store) == list(range(110))  # not doubled, and the read finishes the move
    assert hot_indexes(store) == list(range(100, 110))
    assert len(objects(place)) == 1


def test_a_resent_batch_already_in_s3_is_not_stored_again(place: Place) -> None:
    store = opened(place.store(chunk_size=100))
    assert store.append_metrics(PREFIX, "train", points(0, 100), batch_id="b-1") == AppendResult(0, 100, False)
    assert store.metric_stats(PREFIX, "train").get("coldDataPoints") == 100
    assert store.append_metrics(PREFIX, "train", points(0, 100), batch_id="b-1") == AppendResult(0, 100, True)
    assert hot_indexes(store) == []
    assert steps(store) == list(range(100))
    assert store.metric_stats(PREFIX, "train")["totalDataPoints"] == 100


def test_two_stores_moving_the_same_chunks_at_once_store_each_once(place: Place) -> None:
    store = _full_hot_chunk(place)
    store.append_metrics(PREFIX, "train", [])  # nothing: no move triggered
    others = [place.store(chunk_size=100) for _ in range(3)]
    barrier = threading.Barrier(len(others))
    moved: list[int] = []

    def move(other: MongoStore) -> None:
        barrier.wait()
        moved.append(other.move_full_chunks(PREFIX, "train"))

    threads = [threading.Thread(target=move, args=(other,)) for other in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(moved) == 1
    assert len(objects(place)) == 1
    assert store.db["metric_chunks"].count_documents({}) == 1
    assert steps(store) == list(range(110))
    assert hot_indexes(store) == list(range(100, 110))


# -- the frame codec ----------------------------------------------------------------------

scalars = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.booleans()
    | st.none()
    | st.text(max_size=8)
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                           max_size=3), max_leaves=6)
keys = st.sampled_from(["loss", "step", "_ts", "$set", "a.b", "", "ü"])
rows = st.lists(st.dictionaries(keys, values, max_size=5), max_size=40)


def _bits(value: Any) -> Any:
    """Comparable form: floats by their bits (-0.0), any NaN as NaN, key order kept."""
    if type(value) is float:
        return ("nan",) if math.isnan(value) else ("f", struct.pack("<d", value))
    if isinstance(value, list):
        return [_bits(v) for v in value]
    if isinstance(value, dict):
        return [(k, _bits(v)) for k, v in value.items()]
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(rows)
def test_frames_round_trip_any_points_exactly(given_rows: list[dict[str, Any]]) -> None:
    back = chunk_codec.decode_frame(chunk_codec.encode_frame(given_rows))
    assert _bits(back) == _bits(given_rows)
