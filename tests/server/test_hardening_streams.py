"""Issue 9, items 1, 3 and 5, against real ``ml-dash serve`` processes over a folder.

- Many streams under a lowered descriptor limit (``resource.prlimit`` on the server
  process): every request is answered, and the server keeps a bounded number of data
  files open.
- A damaged line in a data file is never a 500 or a stuck stream.
- SIGKILL while a client appends (and after many batches): no batch is stored twice,
  nothing is lost, and the first append after a restart reads the file's tail, not the
  whole file.

In-process counterparts: tests/test_store_hardening.py.
"""

from __future__ import annotations

import os
import random
import resource
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml_dash import Experiment
from ml_dash.records import ExperimentInfo
from ml_dash.stores.local import LocalStore
from support.files import jsonl
from support.processes import HANG_GUARD, ServerProcess

PREFIX = "alice/proj/run-1"


def limited_server(root: Path, nofile: int) -> ServerProcess:
    """A folder server whose soft and hard RLIMIT_NOFILE are ``nofile`` (set before it
    opens anything but its interpreter's files)."""
    server = ServerProcess(root=root)
    server.launch()
    assert server.proc is not None
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    return server.wait_ready()


def data_files_open(pid: int, root: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(root)) and target.endswith(".jsonl")
    return count


def bytes_read(pid: int) -> int:
    with open(f"/proc/{pid}/io", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
    return response.json()


def append_metric(client: httpx.Client, name: str, batch_id: str, points: list[dict[str, Any]],
                  prefix: str = PREFIX) -> httpx.Response:
    return client.post("/api/v1/metrics/append", params={"prefix": prefix, "name": name},
                       json={"batchId": batch_id, "points": points})


# -- 1. bounded open files ----------------------------------------------------------------------


def _many_streams(tmp_path: Path, streams: int, nofile: int, clients: int) -> None:
    root = tmp_path / "root"
    server = limited_server(root, nofile)
    assert server.proc is not None
    pid = server.proc.pid
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert f"Max open files            {nofile}" in limits
        ok(httpx.post(f"{server.url}/api/v1/experiment/open", json={"prefix": PREFIX}))
        most_open = 0

        def send(part: int) -> None:
            nonlocal most_open
            with httpx.Client(base_url=server.url, timeout=HANG_GUARD) as client:
                for n in range(part, streams, clients):
                    answer = ok(append_metric(client, f"s/{n}", f"b-{n}", [{"n": n, "_ts": 1.0 + n}]))
                    assert answer["firstIndex"] == 0
                    if n % 1000 == 0:
                        most_open = max(most_open, data_files_open(pid, root))

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(send, range(clients)))
        capacity = max(16, nofile // 4)
        # The pool holds at most `capacity`; a request in flight may hold one more for its
        # duration (the periodic fsync's duplicate of a descriptor, a read), never more.
        assert most_open <= capacity + clients
        with httpx.Client(base_url=server.url, timeout=HANG_GUARD) as client:
            # The streams that were closed reopen, and everything else still works.
            for n in random.Random(9).sample(range(streams), 50):
                again = ok(append_metric(client, f"s/{n}", f"b-{n}", [{"n": n, "_ts": 1.0 + n}]))
                assert (again["firstIndex"], again["duplicate"]) == (0, True)
                ok(append_metric(client, f"s/{n}", f"c-{n}", [{"n": -n, "_ts": 2.0 + n}]))
                page = ok(client.get("/api/v1/metrics/read", params={"prefix": PREFIX, "name": f"s/{n}"}))
                assert [p["data"]["n"] for p in page["data"]] == [n, -n]
            listed = ok(client.get("/api/v1/metrics/list", params={"prefix": PREFIX}))["metrics"]
            assert len(listed) == streams
            other = "alice/proj/run-2"
            ok(client.post("/api/v1/experiment/open", json={"prefix": other}))
            ok(client.post("/api/v1/params", params={"prefix": other}, json={"params": {"lr": 0.1}}))
            ok(client.post("/api/v1/logs/append", params={"prefix": other},
                           json={"batchId": "l-1", "records": [{"ts": 1.0, "level": "info", "message": "hi",
                                                                "metadata": None}]}))
            assert len(ok(client.get("/api/v1/logs", params={"prefix": other}))["logs"]) == 1
            assert data_files_open(pid, root) <= capacity
    finally:
        server.stop()


def test_3000_streams_with_256_descriptors(tmp_path: Path) -> None:
    _many_streams(tmp_path, 3000, 256, clients=2)


@pytest.mark.slow
def test_100000_streams_with_1024_descriptors(tmp_path: Path) -> None:
    _many_streams(tmp_path, 100_000, 1024, clients=4)


# -- 3. damaged lines ----------------------------------------------------------------------------

KINDS = {
    "metrics": ("metrics/train/data.jsonl", b'{"index":"5","data":{}}'),
    "logs": ("logs/logs.jsonl", b'{"sequenceNumber":"5","level":"info","message":"x"}'),
    "tracks": ("tracks/pose/data.jsonl", b'{"timestamp":"5","x":1}'),
}
DAMAGE = {"garbage": b"GARBAGE", "foo": b'{"foo":1}', "string": None, "first-42": b"42"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("damaged") / "root"
    server = ServerProcess(root=root).start()
    yield server
    server.stop()


class Stream:
    """One kind of stream of one experiment on the server, written and read over HTTP."""

    def __init__(self, client: httpx.Client, prefix: str, kind: str) -> None:
        self.client, self.prefix, self.kind = client, prefix, kind
        self.q = {"prefix": prefix}

    def append(self, start: int, count: int, batch_id: str) -> dict[str, Any]:
        steps = range(start, start + count)
        if self.kind == "metrics":
            return ok(append_metric(self.client, "train", batch_id, [{"step": i, "_ts": 10.0 + i} for i in steps],
                                    self.prefix))
        if self.kind == "logs":
            records = [{"ts": 10.0 + i, "level": "info", "message": f"m{i}", "metadata": {"step": i}} for i in steps]
            return ok(self.client.post("/api/v1/logs/append", params=self.q,
                                       json={"batchId": batch_id, "records": records}))
        entries = [{"timestamp": 10.0 + i, "step": i} for i in steps]
        return ok(self.client.post("/api/v1/tracks/append", params={**self.q, "topic": "pose"},
                                   json={"batchId": batch_id, "entries": entries}))

    def first(self, answer: dict[str, Any]) -> int | None:
        return {"metrics": answer.get("firstIndex"), "logs": answer.get("firstSequence")}.get(self.kind)

    def steps(self) -> list[int]:
        """The steps every read of the kind returns (the reads checked against each other)."""
        if self.kind == "metrics":
            q = {**self.q, "name": "train"}
            page = ok(self.client.get("/api/v1/metrics/read", params=q))
            assert [p["index"] for p in page["data"]] == list(range(page["total"]))
            tail = ok(self.client.get("/api/v1/metrics/read", params={**q, "start_index": page["total"] - 2,
                                                                       "limit": 1}))
            assert [p["index"] for p in tail["data"]] == [page["total"] - 2]
            stats = ok(self.client.get("/api/v1/metrics/stats", params=q))
            assert stats["totalDataPoints"] == page["total"] and stats["damaged"] == 1
            assert ok(self.client.get("/api/v1/metrics/list", params=self.q))["metrics"] == [stats]
            return [p["data"]["step"] for p in page["data"]]
        if self.kind == "logs":
            logs = ok(self.client.get("/api/v1/logs", params={**self.q, "limit": 1000}))["logs"]
            newest = ok(self.client.get("/api/v1/logs", params={**self.q, "limit": 1000, "descending": "true",
                                                                 "level": "info"}))["logs"]
            assert [e["sequenceNumber"] for e in logs] == list(range(len(logs)))
            assert newest == logs[::-1]
            return [e["metadata"]["step"] for e in logs]
        entries = ok(self.client.get("/api/v1/tracks/read", params={**self.q, "topic": "pose"}))["entries"]
        listed = ok(self.client.get("/api/v1/tracks/list", params=self.q))["tracks"]
        assert [t["totalEntries"] for t in listed] == [len(entries)]
        return [e["step"] for e in entries]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_line_is_never_a_500_nor_a_stuck_stream(server: ServerProcess, kind: str, damage: str) -> None:
    prefix = f"alice/damaged/{kind}-{damage}"
    relative, string_counter = KINDS[kind]
    line = DAMAGE[damage] or string_counter
    with httpx.Client(base_url=server.url, timeout=HANG_GUARD) as client:
        ok(client.post("/api/v1/experiment/open", json={"prefix": prefix}))
        stream = Stream(client, prefix, kind)
        assert stream.first(stream.append(0, 3, "b-1")) in (0, None)
        assert server.root is not None
        path = server.root / prefix / relative
        if damage == "first-42":
            path.write_bytes(line + b"\n" + path.read_bytes())
        else:
            with path.open("ab") as fh:
                fh.write(line + b"\n")
        assert stream.steps() == [0, 1, 2]
        answer = stream.append(3, 2, "b-2")
        assert stream.first(answer) == (None if kind == "tracks" else 3) and not answer["duplicate"]
        again = stream.append(0, 3, "b-1")
        assert again["duplicate"] and stream.first(again) == (None if kind == "tracks" else 0)
        assert stream.steps() == [0, 1, 2, 3, 4]
    if damage != "first-42":
        assert Path(str(path) + ".damaged").read_bytes() == line + b"\n"


def test_a_remote_run_over_damaged_streams_completes_and_reads(server: ServerProcess, tmp_path: Path) -> None:
    prefix = "alice/damaged/remote-run"
    with Experiment(prefix=prefix, dash_url=server.url, dash_root=None, echo=False).run as exp:
        exp.metrics("train").log(step=0)
        exp.log("first", metadata={"step": 0})
        exp.tracks("pose").append(step=0)
    assert server.root is not None
    run = server.root / prefix
    for relative in ("metrics/train/data.jsonl", "logs/logs.jsonl", "tracks/pose/data.jsonl"):
        (run / relative).write_bytes(b"42\n" + (run / relative).read_bytes() + b'{"foo":1}\n')
    with Experiment(prefix=prefix, dash_url=server.url, dash_root=None, echo=False).run as exp:
        for step in (1, 2):
            exp.metrics("train").log(step=step)
            exp.log("again", metadata={"step": step})
            exp.tracks("pose").append(step=step)
        exp.flush()
        page = exp.metrics("train").read()
        stats = exp.metrics("train").stats()
        logs = exp.logs.read()
        track = exp.tracks("pose").read()
    assert exp.close_report.ok, str(exp.close_report)
    assert exp.status == "COMPLETED"
    assert [(p["index"], p["data"]["step"]) for p in page["data"]] == [(0, 0), (1, 1), (2, 2)]
    assert (stats["totalDataPoints"], stats["damaged"]) == (3, 2)
    assert [e["metadata"]["step"] for e in logs["logs"]] == [0, 1, 2]
    assert [e["step"] for e in track] == [0, 1, 2]


# -- 5. SIGKILL: never a batch twice, never a whole-file scan ------------------------------------


class Sender(threading.Thread):
    """Appends batches ``c-0`` … ``c-<n-1>`` (one point each) in order, resending each until
    the server answers it, whatever happens to the server meanwhile."""

    def __init__(self, server: ServerProcess, count: int) -> None:
        super().__init__(daemon=True)
        self.server, self.count = server, count
        self.answers: dict[str, dict[str, Any]] = {}
        self.resent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.server.url, timeout=10.0) as client:
                for k in range(self.count):
                    self.answers[f"c-{k}"] = self._send(client, f"c-{k}", k)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _send(self, client: httpx.Client, batch_id: str, k: int) -> dict[str, Any]:
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            try:
                response = append_metric(client, "train", batch_id, [{"k": k, "_ts": 5.0 + k}])
            except httpx.TransportError:
                self.resent += 1
                time.sleep(0.01)
                continue
            if response.status_code == 503:
                time.sleep(0.01)
                continue
            answer: dict[str, Any] = ok(response)
            return answer
        raise AssertionError(f"{batch_id} was not answered within {HANG_GUARD}s")


def _sigkill_scenario(tmp_path: Path, prefilled: int, batches: int, kills: int) -> None:
    root = tmp_path / "root"
    store = LocalStore(root)
    store.open_experiment(ExperimentInfo(prefix=PREFIX, owner="alice", project="proj", name="run-1"))
    for n in range(prefilled):
        store.append_metrics(PREFIX, "train", [{"pre": n, "_ts": 1.0}], f"pre-{n}")
    store.close()
    data = root / PREFIX / "metrics/train/data.jsonl"
    size = data.stat().st_size
    server = ServerProcess(root=root).start()
    assert server.proc is not None
    try:
        with httpx.Client(base_url=server.url, timeout=HANG_GUARD) as client:
            ok(append_metric(client, "warm-up", "w-0", [{"x": 1, "_ts": 1.0}]))  # lazy imports, pools
            before = bytes_read(server.proc.pid)
            again = ok(append_metric(client, "train", f"pre-{prefilled - 1}", [{"pre": -1, "_ts": 1.0}]))
            cost = bytes_read(server.proc.pid) - before
            assert (again["firstIndex"], again["duplicate"]) == (prefilled - 1, True)
            print(f"the first append after the start read {cost} bytes of a {size}-byte file")
            assert cost < 3 << 20 and cost * 4 < size, f"first append read {cost} bytes of a {size}-byte file"
        sender = Sender(server, batches)
        sender.start()
        rng = random.Random(prefilled)
        for kill in range(kills):
            while len(sender.answers) < (kill + 1) * batches // (kills + 1) and sender.is_alive():
                time.sleep(0.002)
            time.sleep(rng.random() * 0.02)
            server.kill()
            server.start()
            # Resend what was answered last: always a duplicate with the first answer's index.
            with httpx.Client(base_url=server.url, timeout=HANG_GUARD) as client:
                done = sorted(list(sender.answers), key=lambda b: int(b[2:]))[-3:]
                for batch_id in done:
                    k = int(batch_id[2:])
                    resent = ok(append_metric(client, "train", batch_id, [{"k": k, "_ts": 5.0 + k}]))
                    assert resent == {**sender.answers[batch_id], "duplicate": True}
        sender.join(HANG_GUARD * 2)
        assert sender.error is None, repr(sender.error)
        assert len(sender.answers) == batches
        assert sender.resent >= kills, "every kill made the client resend"
    finally:
        server.stop()
    lines = jsonl(data)
    assert [line["index"] for line in lines] == list(range(prefilled + batches))
    assert [line["data"]["pre"] for line in lines[:prefilled]] == list(range(prefilled))
    assert [line["data"]["k"] for line in lines[prefilled:]] == list(range(batches)), "a batch stored twice or lost"
    ids = [line["batchId"] for line in lines[prefilled:]]
    assert ids == [f"c-{k}" for k in range(batches)]
    assert all(sender.answers[f"c-{k}"]["firstIndex"] == prefilled + k for k in range(batches))


def test_sigkill_while_appending_never_stores_a_batch_twice(tmp_path: Path) -> None:
    _sigkill_scenario(tmp_path, prefilled=100_000, batches=1_200, kills=3)


@pytest.mark.slow
def test_sigkill_after_a_million_batches_never_stores_a_batch_twice(tmp_path: Path) -> None:
    _sigkill_scenario(tmp_path, prefilled=1_000_000, batches=5_000, kills=6)
