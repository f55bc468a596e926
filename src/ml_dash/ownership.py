"""One process owns a running experiment: the claim at start, the heartbeat, the release.

``run.start()`` claims the experiment on every store of its backend
(``Store.claim_experiment``) before anything is written: the local folder (a claim
that holds the folder's ``.owner.lock`` while this process lives) and the server (a
lease the server lets lapse when it is not renewed). A timer thread renews every claim
each ``lease_seconds / 6`` seconds (10 s by default): that renewal is the heartbeat
readers judge a run by. The end of the run releases the claims.

What the start does, by ``resume=``:

- ``"allow"``: claim the prefix as given; an existing run is resumed.
- ``"never"``: claim it only if no such experiment exists (ExperimentExistsError).
- ``"new"``: claim the first free name: the given one if it is free, else the next
  counter after the highest in use (``run-1`` -> ``run-2``; ``baseline`` -> ``baseline-2``).

A process killed with ``kill -9`` cannot release its claims. On the folder its lock
died with it; a server only learns it when the lease lapses. So that a run restarted
at once on the same machine need not wait for that, every claim on a server is
backed by a *ticket*: a file under ``<dash_root>/.claims/<server>/`` that the process
keeps locked (``flock``) while it runs. A later process that can lock a ticket of the
same experiment knows that holder died, and its claim ``replaces`` it.

A store that refuses the claim for good (``busy``, ``exists``, a bad token) makes the
start raise, after the claims already granted are released. A store that cannot be
reached (the server is down) only warns: the heartbeat thread claims it later. Only
``"never"`` and ``"new"`` need an answer at start, so they raise StorageError then.
The heartbeat never touches the logging hot path: it is its own thread.
"""

from __future__ import annotations

import _thread
import fcntl
import hashlib
import logging
import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .errors import ExperimentBusyError, ExperimentExistsError, InvalidValueError, StorageError
from .names import parse_prefix
from .records import Claim, Holder
from .stores.base import Store
from .stores.claims import check_lease

log = logging.getLogger("ml_dash")

DEFAULT_LEASE = 60.0
RESUME_MODES = ("allow", "never", "new")
NEW_NAME_TRIES = 100
_COUNTED = re.compile(r"(.*)-(\d+)")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_.-]")


def lease_from(value: float | None) -> float:
    """The lease to claim with: ``value``, else ``$ML_DASH_LEASE_SECONDS``, else 60 s.

    InvalidValueError names the setting when it is not a number in 0.1 .. 3600.
    """
    if value is not None:
        return check_lease(value)
    env = os.environ.get("ML_DASH_LEASE_SECONDS")
    if not env:
        return DEFAULT_LEASE
    try:
        seconds = float(env)
    except ValueError:
        raise InvalidValueError(f"ML_DASH_LEASE_SECONDS={env!r} is not a number of seconds") from None
    return check_lease(seconds, "ML_DASH_LEASE_SECONDS")


def check_resume(value: object) -> str:
    """``value`` if it is a resume mode, else InvalidValueError listing them."""
    if not isinstance(value, str) or value not in RESUME_MODES:
        raise InvalidValueError(f"resume must be one of {', '.join(map(repr, RESUME_MODES))}, got {value!r}")
    return value


def next_names(name: str, taken: set[str]) -> Iterator[str]:
    """Candidate names for ``resume="new"``: ``name`` if not taken, then the counters
    after the highest in use (``run-1`` -> ``run-2``, ``run-009`` -> ``run-010``,
    ``baseline`` -> ``baseline-2``)."""
    counted = _COUNTED.fullmatch(name)
    stem, width, start = (counted[1], len(counted[2]), int(counted[2])) if counted else (name, 1, 1)
    if name not in taken:
        yield name
    used = [int(m[2]) for m in map(_COUNTED.fullmatch, taken) if m is not None and m[1] == stem]
    n = max([start, *used]) + 1
    while True:
        yield f"{stem}-{n:0{width}d}"
        n += 1


@dataclass
class ClaimTarget:
    """A store to claim the experiment on, a name for it in messages, and (servers) the
    folder of this machine's tickets for claims on it."""

    store: Store
    where: str
    tickets: str | None = None
    held: dict[str, int] = field(default_factory=dict)  # prefix -> fd of this process's locked ticket


_TICKET = ".ticket"


def _ticket_folder(target: ClaimTarget, prefix: str) -> str | None:
    if target.tickets is None:
        return None
    return os.path.join(target.tickets, hashlib.sha256(prefix.encode()).hexdigest()[:24])


def dead_holders(folder: str | None) -> list[str]:
    """Ids of the holders whose tickets in ``folder`` nobody holds locked (their processes died)."""
    if folder is None:
        return []
    try:
        names = [n for n in os.listdir(folder) if n.endswith(_TICKET)]
    except OSError:
        return []
    dead = []
    for name in names:
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            dead.append(name[: -len(_TICKET)])
        except OSError:
            pass  # held: that process lives
        finally:
            os.close(fd)
    return dead


def hold_ticket(folder: str | None, holder_id: str) -> int | None:
    """Create this holder's ticket in ``folder`` and keep it locked (the fd; None when it
    cannot be made: the claim then lapses by its lease alone). It is locked before it
    gets its name, so nobody ever sees it unlocked."""
    if folder is None:
        return None
    fd = None
    try:
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{holder_id}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, os.path.join(folder, holder_id + _TICKET))
        return fd
    except OSError as exc:
        log.debug("ml-dash: cannot make a claim ticket in %s: %s", folder, exc)
        if fd is not None:
            os.close(fd)
        return None


def drop_tickets(folder: str | None, holder_ids: Sequence[str]) -> None:
    for holder_id in holder_ids:
        try:
            os.unlink(os.path.join(folder or "", holder_id + _TICKET))
        except OSError:
            pass


def this_process() -> Holder:
    """A new holder for this process: unique id, host name and pid."""
    host = socket.gethostname() or "localhost"
    tag = _NOT_IN_ID.sub("_", host)[:60] or "host"
    return Holder(f"{tag}-{os.getpid()}-{os.urandom(6).hex()}", host[:255], os.getpid())


class Ownership:
    """This process's claims on one experiment, renewed by a heartbeat thread until released.

    ``targets``: the stores to claim on, in order (the local folder first); the
    Ownership closes them when it is released.
    """

    def __init__(self, targets: Sequence[ClaimTarget], lease_seconds: float, join: bool) -> None:
        self.targets = list(targets)
        self.lease_seconds = lease_seconds
        self.join = join
        self.holder = this_process()
        self.prefix: str | None = None
        self.claim: Claim | None = None  # the answer of the first store that granted it at start
        self._lock = threading.Lock()  # a renewal and the release never overlap
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._warned: set[int] = set()

    # -- the start ---------------------------------------------------------------------

    def start(self, prefix: str, resume: str) -> str:
        """Claim ``prefix`` (or, with ``resume="new"``, the first free name) everywhere and
        start the heartbeat; returns the prefix claimed. Raises what a store refused with."""
        try:
            if resume == "new":
                prefix = self._claim_new(prefix)
            else:
                self._claim_everywhere(prefix, new=resume == "never", resume=resume)
        except BaseException:
            self._close_stores()
            raise
        self.prefix = prefix
        # threading.Thread.start() waits until the new thread runs: 0.1-0.3 ms measured
        # here, as much as the claim itself, on every run.start(). The heartbeat needs no
        # such handshake (its first renewal is lease/6 seconds away), so it starts without.
        _thread.start_new_thread(self._beat, ())
        return prefix

    def _claim_everywhere(self, prefix: str, new: bool, resume: str) -> None:
        granted: list[ClaimTarget] = []
        try:
            for target in self.targets:
                try:
                    claim = self._claim_on(target, prefix, new)
                except StorageError as exc:
                    if resume != "allow":
                        raise StorageError(
                            f"resume={resume!r} needs to know whether {prefix!r} exists, and {target.where} cannot "
                            f"tell now ({exc}); use resume='allow' to start anyway"
                        ) from exc
                    warnings.warn(f"ml-dash: cannot claim {prefix!r} on {target.where} now ({exc}); going on, and "
                                  "claiming it in the background", RuntimeWarning, stacklevel=5)
                    continue
                granted.append(target)
                if self.claim is None:
                    self.claim = claim
        except BaseException:
            self.claim = None
            for target in granted:
                self._release_on(target, prefix)
            raise

    def _claim_on(self, target: ClaimTarget, prefix: str, new: bool = False) -> Claim:
        """One claim (or renewal) on one store; on a server, holders whose tickets are free are replaced."""
        folder = _ticket_folder(target, prefix)
        dead = dead_holders(folder) if prefix not in target.held else []
        claim = target.store.claim_experiment(prefix, self.holder, self.lease_seconds, join=self.join, new=new,
                                              replaces=dead)
        if prefix not in target.held:
            drop_tickets(folder, dead)
            fd = hold_ticket(folder, self.holder.id)
            if fd is not None:
                target.held[prefix] = fd
        return claim

    def _claim_new(self, prefix: str) -> str:
        parsed = parse_prefix(prefix)
        taken: set[str] = set()
        for target in self.targets:
            try:
                infos = target.store.list_experiments(parsed.owner, parsed.project)
            except StorageError as exc:
                raise StorageError(f"resume='new' needs the names in use under {parsed.owner}/{parsed.project}, "
                                   f"and {target.where} cannot tell now ({exc}); use resume='allow' to start "
                                   "anyway") from exc
            taken.update(info.name for info in infos if info.folders == parsed.folders)
        for tries, name in enumerate(next_names(parsed.name, taken)):
            if tries >= NEW_NAME_TRIES:
                raise ExperimentExistsError(f"resume='new': no free name found after {NEW_NAME_TRIES} tries from "
                                            f"{prefix!r}")
            candidate = "/".join((parsed.owner, parsed.project, *parsed.folders, name))
            parse_prefix(candidate)  # a counter can make a name too long: say so
            try:
                self._claim_everywhere(candidate, new=True, resume="new")
            except (ExperimentExistsError, ExperimentBusyError):
                continue  # taken since the list was read
            return candidate
        raise AssertionError("unreachable")

    # -- the heartbeat -----------------------------------------------------------------

    def _beat(self) -> None:
        period = max(self.lease_seconds / 6, 0.02)
        while not self._stop.wait(period):
            with self._lock:
                if self._stop.is_set():
                    return
                self.renew()

    def renew(self) -> None:
        """Renew the claim on every store (claim it where the start could not). Never raises."""
        prefix = self.prefix
        if prefix is None:
            return
        for i, target in enumerate(self.targets):
            try:
                self._claim_on(target, prefix)
            except ExperimentBusyError as exc:
                self._warn_once(i, f"ml-dash: {target.where} says another process runs {prefix!r} now ({exc}); "
                                   "this run keeps writing, and its data mixes with that one's")
                continue
            except StorageError as exc:  # unreachable for now: the outbox warns about that already
                log.debug("ml-dash: heartbeat of %s on %s failed: %s", prefix, target.where, exc)
                continue
            except Exception as exc:  # a refusal for good, or a bug: the training loop must go on
                self._warn_once(i, f"ml-dash: cannot renew the claim on {prefix!r} at {target.where}: "
                                   f"{type(exc).__name__}: {exc}")
                continue
            self._warned.discard(i)

    def _warn_once(self, key: int, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=2)

    # -- the end -----------------------------------------------------------------------

    def release(self, timeout: float = 2.0) -> None:
        """Stop the heartbeat and end the claims, waiting at most ``timeout`` seconds (a
        server that does not answer in time lets the lease lapse instead). In a forked
        child it does nothing: the parent owns the claims."""
        self._stop.set()
        if os.getpid() != self._pid:
            return
        done = threading.Thread(target=self._release_all, name="ml-dash-release", daemon=True)
        try:
            done.start()
        except RuntimeError:  # no new threads at interpreter shutdown: release from here
            self._release_all()
            return
        done.join(max(timeout, 0.0))

    def _release_all(self) -> None:
        with self._lock:  # after a renewal in progress, never before it
            prefix, self.prefix = self.prefix, None
            if prefix is not None:
                for target in self.targets:
                    self._release_on(target, prefix)
            self._close_stores()

    def _release_on(self, target: ClaimTarget, prefix: str) -> None:
        try:
            target.store.release_experiment(prefix, self.holder.id)
        except Exception as exc:  # the claim lapses by itself (the ticket stays for the next run to find)
            log.debug("ml-dash: release of %s failed: %s", prefix, exc)
            fd = target.held.pop(prefix, None)
        else:
            fd = target.held.pop(prefix, None)
            drop_tickets(_ticket_folder(target, prefix), [self.holder.id])
        if fd is not None:
            os.close(fd)

    def _close_stores(self) -> None:
        for target in self.targets:
            for fd in target.held.values():
                os.close(fd)
            target.held.clear()
            try:
                target.store.close()
            except Exception as exc:
                log.debug("ml-dash: closing a claim store failed: %s", exc)
