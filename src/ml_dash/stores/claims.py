"""Who runs an experiment: the rules of a claim, decided once for every store.

A store keeps, per experiment, a *claim document*: the processes holding it now (each
a :class:`HolderState`), the time of the last heartbeat, and (MongoStore) the resume
history. Every store reads that document, lets :func:`decide` say what a claim does,
and writes the result back atomically (LocalStore under the folder's ``.lock``,
MongoStore by compare-and-swap), so the rules cannot drift between stores.

The rules:

- A holder is alive while its lease runs: ``renewed_at + lease_seconds`` is in the
  future. A *process* holder (LocalStore in the SDK's own process, see
  ``LocalStore(process_claims=True)``) is alive exactly while a process holds the
  experiment's ``.owner.lock``: the lock dies with its process, whatever the clock says.
- A holder that claims again while it is still listed renews its claim (the heartbeat).
- A claim may name holders it ``replaces``: the SDK does so for holders of its own
  host whose process locks it could take (they died), so that a run restarted at once
  after ``kill -9`` need not wait for their leases to lapse.
- A new holder is refused with ``busy`` while another holder is alive, unless it joins
  (``join=True``); with ``new=True`` it is refused with ``exists`` when the experiment
  is stored already (and with ``busy`` while another holder is alive).
- A new holder that finds no live holder on a stored experiment resumes it: a
  :class:`~ml_dash.records.Resume` is recorded, ``interrupted`` when the run had been
  left RUNNING by holders that are gone. Dead holders are dropped.
- A reader shows a RUNNING experiment as ``STALE`` when it has a claim document and no
  live holder (:func:`reading`). Experiments written before claims existed have none
  and keep their stored status.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import ExperimentBusyError, ExperimentExistsError, InvalidValueError
from ..records import STALE, Claim, ExperimentInfo, Holder, Resume

MIN_LEASE = 0.1
MAX_LEASE = 3600.0
_HOLDER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_HOST = 255


@dataclass(frozen=True)
class HolderState:
    """One holder as a claim document keeps it."""

    id: str
    host: str
    pid: int
    join: bool
    claimed_at: float
    renewed_at: float
    lease_seconds: float
    process: bool = False  # alive while its process holds the folder's .owner.lock (LocalStore)

    def alive(self, now: float, process_alive: bool | None) -> bool:
        """Alive by its process lock when it has one and the lock could be tested, else by its lease."""
        if self.process and process_alive is not None:
            return process_alive
        return self.renewed_at + self.lease_seconds > now

    def describe(self, now: float) -> str:
        since = f"claimed {max(now - self.claimed_at, 0.0):.0f} s ago"
        if self.process:
            return f"process {self.pid} on host {self.host!r} ({since}; it holds the experiment's lock while it lives)"
        return (f"process {self.pid} on host {self.host!r} ({since}, last heartbeat "
                f"{max(now - self.renewed_at, 0.0):.0f} s ago; its claim lapses {self.lease_seconds:g} s after "
                "its last heartbeat)")


@dataclass(frozen=True)
class Decision:
    """What a claim does: the holders to store, the answer, and a resume to record (or None)."""

    holders: list[HolderState]
    claim: Claim
    resume: Resume | None


def check_lease(lease_seconds: object, what: str = "lease_seconds") -> float:
    """``lease_seconds`` as a float, or InvalidValueError naming it."""
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int | float):
        raise InvalidValueError(f"{what} must be a number of seconds, got {lease_seconds!r}")
    value = float(lease_seconds)
    if not math.isfinite(value) or not MIN_LEASE <= value <= MAX_LEASE:
        raise InvalidValueError(
            f"{what} must be between {MIN_LEASE:g} and {MAX_LEASE:g} seconds, got {lease_seconds!r}"
        )
    return value


def check_holder_ids(ids: Sequence[str], what: str = "replaces") -> tuple[str, ...]:
    """``ids`` (at most 100 holder ids) as a tuple, or InvalidValueError naming ``what``."""
    if isinstance(ids, str) or len(ids) > 100:
        raise InvalidValueError(f"{what} must be a list of at most 100 holder ids")
    for value in ids:
        if not isinstance(value, str) or not _HOLDER_ID.fullmatch(value):
            raise InvalidValueError(f"{what}: {value!r:.80} is not a holder id (1-128 characters of [A-Za-z0-9_.:-])")
    return tuple(ids)


def check_holder(holder: Holder) -> Holder:
    """``holder`` if its fields can be stored, else InvalidValueError naming the field."""
    if not isinstance(holder.id, str) or not _HOLDER_ID.fullmatch(holder.id):
        raise InvalidValueError(f"holder id must be 1-128 characters of [A-Za-z0-9_.:-], got {holder.id!r:.80}")
    if not isinstance(holder.host, str) or len(holder.host) > MAX_HOST or not holder.host.isprintable():
        raise InvalidValueError(f"holder host must be printable text of at most {MAX_HOST} characters, "
                                f"got {holder.host!r:.80}")
    if isinstance(holder.pid, bool) or not isinstance(holder.pid, int) or not 0 <= holder.pid < 2**63:
        raise InvalidValueError(f"holder pid must be an integer >= 0, got {holder.pid!r}")
    return holder


def decide(
    prefix: str,
    holders: list[HolderState],
    holder: Holder,
    lease_seconds: float,
    *,
    join: bool,
    new: bool,
    existed: bool,
    status: str | None,
    known: bool,
    process: bool = False,
    process_alive: bool | None = None,
    replaces: Sequence[str] = (),
    now: float | None = None,
) -> Decision:
    """Apply the rules above to the stored ``holders`` of ``prefix``.

    ``existed``/``status``: whether the experiment is stored and its stored status;
    ``known``: whether it had a claim document before (else a run left RUNNING cannot
    be told from one written before claims existed); ``process``: the new holder is a
    process holder; ``process_alive``: whether a process holds the lock now (None:
    not tested); ``replaces``: ids of holders the caller knows to be dead (it held
    their process locks on their host), dropped whatever their leases say. Raises
    ExperimentBusyError or ExperimentExistsError.
    """
    now = time.time() if now is None else now
    if replaces:
        holders = [h for h in holders if h.id not in replaces]
    live = [h for h in holders if h.alive(now, process_alive)]
    mine = next((h for h in holders if h.id == holder.id), None)
    if mine is not None:
        others = [h for h in live if h.id != holder.id]
        renewed = replace(mine, renewed_at=now, lease_seconds=lease_seconds)
        claim = Claim(prefix, holder.id, holders=len(others) + 1, renewed=True, existed=existed)
        return Decision([*others, renewed], claim, None)
    if live and (new or not join):
        first = live[0]
        hint = "" if new else (
            "; pass join=True to write beside it (each process its own streams), or wait until it ends"
        )
        raise ExperimentBusyError(f"experiment {prefix!r} is running in {first.describe(now)}{hint}")
    if new and existed:
        raise ExperimentExistsError(
            f"experiment {prefix!r} exists already (resume='never'); use resume='allow' to continue it or "
            "resume='new' to start the next free name"
        )
    interrupted = existed and not live and known and status == "RUNNING"
    resume = None
    if existed and not live:
        resume = Resume(now, holder.host, holder.pid, interrupted, status or "RUNNING")
    entry = HolderState(holder.id, holder.host, holder.pid, join, now, now, lease_seconds, process)
    claim = Claim(prefix, holder.id, holders=len(live) + 1, existed=existed, interrupted=interrupted)
    return Decision([*live, entry], claim, resume)


def reading(
    info: ExperimentInfo,
    holders: list[HolderState] | None,
    heartbeat_at: float | None,
    resumes: tuple[Resume, ...],
    process_alive: bool | None = None,
    now: float | None = None,
) -> ExperimentInfo:
    """``info`` as readers see it: resume history and last heartbeat, and ``STALE`` for
    a RUNNING experiment whose claim document (``holders`` not None) has no live holder."""
    now = time.time() if now is None else now
    status = info.status
    if status == "RUNNING" and holders is not None and not any(h.alive(now, process_alive) for h in holders):
        status = STALE
    return replace(info, status=status, heartbeat_at=heartbeat_at, resumes=resumes)
