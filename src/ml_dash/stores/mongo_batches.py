"""Counters and batch ids in MongoDB: unique, gapless ranges that a resend never repeats.

A counter is one document ``{_id, n}``; ``find_one_and_update($inc)`` hands out the
range ``n .. n + count - 1`` atomically, however many server processes share it.

A batch with an id is first *claimed* by inserting ``{_id: "<counter>:<batch id>",
first: None}`` into the batches collection (its ``_id`` is unique), then the range is
reserved and written into the claim. So:

- a resend of an applied batch finds its claim and gets the original first index;
- two copies of one batch arriving at once (a client that timed out and resent to
  another server process) reserve one range between them: the loser waits for the
  winner's ``first``;
- a claim left without ``first`` by a process that died is taken over after
  ``claim_wait`` seconds (the takeover is a conditional write, so a slow original that
  wakes up later finds the claim taken, gives its range back when nothing was
  reserved after it, and uses the taker's).

The one window this cannot close without multi-document transactions (which a
standalone MongoDB lacks): a process that dies between reserving a range and writing
it into the claim leaves those indexes unused. Nothing is lost or doubled: the resend
takes over the claim and stores the batch at a new range.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError


class Reservation(NamedTuple):
    """The first index of a batch's range, and the counter document after reserving."""

    first: int
    counter: dict[str, Any] | None  # None when the batch had been reserved before (a resend)


class BatchLedger:
    """Reserves counter ranges, at most once per batch id."""

    def __init__(self, counters: Collection[Any], batches: Collection[Any], claim_wait: float = 5.0) -> None:
        self.counters = counters
        self.batches = batches
        self.claim_wait = claim_wait

    def _increment(self, counter_id: str, count: int, fields: dict[str, Any]) -> dict[str, Any]:
        update: dict[str, Any] = {"$inc": {"n": count}}
        if fields:
            # Plain $set rather than $setOnInsert: the emulator may ignore $setOnInsert,
            # and these fields never change for a counter.
            update["$set"] = fields
        try:
            doc = self.counters.find_one_and_update(
                {"_id": counter_id}, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            # Two first upserts raced (servers before MongoDB 4.2 do not retry them);
            # the document exists now, so the same update simply increments it.
            doc = self.counters.find_one_and_update({"_id": counter_id}, update, return_document=ReturnDocument.AFTER)
        return dict(doc or {})

    def _give_back(self, counter_id: str, doc: dict[str, Any], count: int) -> None:
        """Undo a reservation nobody will use, when it is still the last one."""
        self.counters.update_one({"_id": counter_id, "n": doc["n"]}, {"$inc": {"n": -count}})

    def reserve(
        self, counter_id: str, count: int, batch_id: str | None = None, fields: dict[str, Any] | None = None
    ) -> Reservation:
        """Reserve ``count`` counter values; with a known ``batch_id``, return its old range.

        ``fields`` are set on the counter document (e.g. which experiment it belongs to).
        """
        fields = fields or {}
        if batch_id is None:
            doc = self._increment(counter_id, count, fields)
            return Reservation(int(doc["n"]) - count, doc)
        key = f"{counter_id}:{batch_id}"
        try:
            self.batches.insert_one({"_id": key, "counter": counter_id, "count": count, "first": None})
        except DuplicateKeyError:
            return self._claimed_before(key, counter_id, count, fields)
        return self._fill_claim(key, counter_id, count, fields)

    def _fill_claim(self, key: str, counter_id: str, count: int, fields: dict[str, Any]) -> Reservation:
        doc = self._increment(counter_id, count, fields)
        first = int(doc["n"]) - count
        done = self.batches.update_one({"_id": key, "first": None}, {"$set": {"first": first}})
        if done.matched_count:
            return Reservation(first, doc)
        self._give_back(counter_id, doc, count)
        record = self.batches.find_one({"_id": key}) or {}
        return Reservation(int(record["first"]), None)

    def _claimed_before(self, key: str, counter_id: str, count: int, fields: dict[str, Any]) -> Reservation:
        deadline = time.monotonic() + self.claim_wait
        pause = 0.005
        while True:
            record = self.batches.find_one({"_id": key})
            if record is not None and record.get("first") is not None:
                return Reservation(int(record["first"]), None)
            if time.monotonic() >= deadline:
                return self._fill_claim(key, counter_id, count, fields)
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
