"""The claim part of the Store protocol (``claim_experiment``, ``release_experiment``),
over every backend of the contract suite: who runs an experiment, its resume history,
and STALE for a RUNNING experiment nobody claims any more.

Stores compare lease times with their own clock; a lease of 0.5 s lapses while a test
sleeps 1 s (a wait for the rule to apply, not a measure of speed).
"""

from __future__ import annotations

import math
import time

import pytest

from contract.test_store_contract import PREFIX, StoreKit, info, kit  # noqa: F401 (kit: the fixture)
from ml_dash import InvalidValueError, Store
from ml_dash.errors import ExperimentBusyError, ExperimentExistsError
from ml_dash.records import Claim, Holder

A = Holder("holder-a", "host-a", 101)
B = Holder("holder-b", "host-b", 202)
C = Holder("holder-c", "host-c", 303)
SHORT = 0.5  # seconds: a lease that lapses within the test
LAPSE = 1.0


@pytest.fixture
def store(kit: StoreKit) -> Store:  # noqa: F811
    return kit.store


def test_a_claim_is_granted_and_a_second_holder_is_refused_as_busy(store: Store) -> None:
    assert store.claim_experiment(PREFIX, A, 30) == Claim(PREFIX, A.id, holders=1)
    with pytest.raises(ExperimentBusyError) as refused:
        store.claim_experiment(PREFIX, B, 30)
    assert refused.value.code == "busy"
    assert "host-a" in str(refused.value) and "101" in str(refused.value) and "join=True" in str(refused.value)


def test_claiming_again_as_the_same_holder_renews_the_heartbeat(store: Store) -> None:
    store.claim_experiment(PREFIX, A, 30)
    store.open_experiment(info())
    before = store.get_experiment(PREFIX)
    assert before is not None and before.heartbeat_at is not None
    time.sleep(0.01)
    again = store.claim_experiment(PREFIX, A, 30)
    assert again.renewed and again.holders == 1 and not again.interrupted
    after = store.get_experiment(PREFIX)
    assert after is not None and after.heartbeat_at is not None
    assert after.heartbeat_at > before.heartbeat_at
    assert after.resumes == () and after.status == "RUNNING"


def test_joining_shares_the_experiment_and_others_stay_refused(store: Store) -> None:
    store.claim_experiment(PREFIX, A, 30)
    assert store.claim_experiment(PREFIX, B, 30, join=True).holders == 2
    store.release_experiment(PREFIX, A.id)
    with pytest.raises(ExperimentBusyError, match="host-b"):
        store.claim_experiment(PREFIX, C, 30)  # B still runs it
    store.release_experiment(PREFIX, B.id)
    assert store.claim_experiment(PREFIX, C, 30).holders == 1


def test_resuming_a_finished_run_is_recorded_and_keeps_the_first_start(store: Store) -> None:
    store.claim_experiment(PREFIX, A, 30)
    store.open_experiment(info(started_at=1_700_000_000.0))
    store.update_experiment(PREFIX, status="COMPLETED", ended_at=1_700_000_100.0)
    store.release_experiment(PREFIX, A.id)
    claim = store.claim_experiment(PREFIX, B, 30)
    assert claim.existed and not claim.interrupted and claim.holders == 1
    store.open_experiment(info(started_at=1_800_000_000.0))
    got = store.get_experiment(PREFIX)
    assert got is not None
    assert got.started_at == pytest.approx(1_700_000_000.0, abs=1e-3)
    assert [(r.host, r.pid, r.interrupted, r.previous_status) for r in got.resumes] == [
        ("host-b", 202, False, "COMPLETED")
    ]
    assert got.resumes[0].at == pytest.approx(time.time(), abs=300)


def test_a_lapsed_claim_shows_the_run_stale_and_the_next_claim_records_the_interruption(store: Store) -> None:
    store.claim_experiment(PREFIX, A, SHORT)
    store.open_experiment(info())
    got = store.get_experiment(PREFIX)
    assert got is not None and got.status == "RUNNING"
    time.sleep(LAPSE)
    got = store.get_experiment(PREFIX)
    assert got is not None and got.status == "STALE"
    assert [i.status for i in store.list_experiments("alice", "contract")] == ["STALE"]
    claim = store.claim_experiment(PREFIX, B, 30)  # A's lease lapsed: B may take over
    assert claim.existed and claim.interrupted and claim.holders == 1
    got = store.get_experiment(PREFIX)
    assert got is not None and got.status == "RUNNING"
    assert [(r.host, r.interrupted, r.previous_status) for r in got.resumes] == [("host-b", True, "RUNNING")]


def test_a_finished_run_is_never_stale(store: Store) -> None:
    store.claim_experiment(PREFIX, A, SHORT)
    store.open_experiment(info())
    store.update_experiment(PREFIX, status="FAILED")
    time.sleep(LAPSE)
    got = store.get_experiment(PREFIX)
    assert got is not None and got.status == "FAILED"


def test_an_experiment_nobody_ever_claimed_keeps_its_status(store: Store) -> None:
    store.open_experiment(info())  # as written before claims existed
    got = store.get_experiment(PREFIX)
    assert got is not None
    assert (got.status, got.heartbeat_at, got.resumes) == ("RUNNING", None, ())


def test_new_refuses_an_existing_experiment_and_claims_a_fresh_one(store: Store) -> None:
    store.open_experiment(info())
    with pytest.raises(ExperimentExistsError) as refused:
        store.claim_experiment(PREFIX, A, 30, new=True)
    assert refused.value.code == "exists" and PREFIX in str(refused.value)
    fresh = "alice/contract/run-2"
    assert store.claim_experiment(fresh, A, 30, new=True) == Claim(fresh, A.id, holders=1)
    with pytest.raises(ExperimentBusyError):
        store.claim_experiment(fresh, B, 30, new=True, join=True)  # claimed, not opened yet: not free


def test_release_of_a_holder_without_a_claim_changes_nothing(store: Store) -> None:
    store.release_experiment("nobody/nothing/never", A.id)
    store.claim_experiment(PREFIX, A, 30)
    store.release_experiment(PREFIX, B.id)
    with pytest.raises(ExperimentBusyError):
        store.claim_experiment(PREFIX, B, 30)


@pytest.mark.parametrize("lease", [0, -1.0, 0.01, math.nan, math.inf, 10_000.0])
def test_a_claim_with_a_bad_lease_is_refused_naming_it(store: Store, lease: float) -> None:
    with pytest.raises(InvalidValueError, match="lease"):
        store.claim_experiment(PREFIX, A, lease)
    assert store.get_experiment(PREFIX) is None


@pytest.mark.parametrize("holder", [Holder("has space", "h", 1), Holder("", "h", 1), Holder("ok", "h\n", 1),
                                    Holder("ok", "h", -5)])
def test_a_claim_with_a_bad_holder_is_refused_naming_the_field(store: Store, holder: Holder) -> None:
    with pytest.raises(InvalidValueError, match="holder"):
        store.claim_experiment(PREFIX, holder, 30)


def test_claims_hold_for_another_store_over_the_same_storage(kit: StoreKit) -> None:  # noqa: F811
    kit.store.claim_experiment(PREFIX, A, 30)
    other = kit.reopen()
    with pytest.raises(ExperimentBusyError):
        other.claim_experiment(PREFIX, B, 30)
    kit.store.release_experiment(PREFIX, A.id)
    assert other.claim_experiment(PREFIX, B, 30).holders == 1
