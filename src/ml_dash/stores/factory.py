"""Which stores an experiment writes to, chosen once from its settings.

- local mode (no server address): a LocalStore over the dash root;
- remote mode (a server address, no explicit root): the server, through an outbox
  under ``<root>/.spool`` (``.dash`` unless ``ML_DASH_ROOT`` says otherwise);
- hybrid mode (a server address and an explicit root): the LocalStore first, then the
  server through the outbox; reads come from the local folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..outbox import Outbox
from ..ownership import ClaimTarget
from .base import Store
from .local import LocalStore
from .remote import RemoteStore, host_key

SPOOL_FOLDER = ".spool"
CLAIMS_FOLDER = ".claims"  # tickets of this machine's claims on servers (ml_dash.ownership)
CLAIM_TIMEOUT = 5.0  # seconds a claim on the server may take (at start, and each heartbeat)


@dataclass
class Backend:
    """The stores of one experiment: ``primary`` is written directly and read from;
    ``replica`` is reached through ``outbox``."""

    primary: LocalStore | None
    replica: RemoteStore | None
    outbox: Outbox | None
    root: str  # the dash root (the outbox lives under it even in remote-only mode)
    api_key: str | None = None

    def claim_targets(self, timeout: float = CLAIM_TIMEOUT) -> list[ClaimTarget]:
        """New stores to claim the experiment on (``ml_dash.ownership``): the local folder
        (claims that live as long as this process) and the server (over its own
        connection, each request bounded by ``timeout`` seconds, so that a heartbeat
        never waits behind an upload; tickets under ``<root>/.claims/<server>``)."""
        targets: list[ClaimTarget] = []
        if self.primary is not None:
            targets.append(ClaimTarget(LocalStore(self.primary.root, scan_batch_ids=False, process_claims=True),
                                       f"the folder {self.primary.root}"))
        if self.replica is not None:
            tickets = os.path.join(os.path.abspath(self.root), CLAIMS_FOLDER, host_key(self.replica.url))
            targets.append(ClaimTarget(RemoteStore(self.replica.url, self.api_key, timeout=timeout),
                                       f"the server {self.replica.url}", tickets))
        return targets

    @property
    def reader(self) -> Store:
        """Where reads go: the local folder when there is one, else the server."""
        store: Store | None = self.primary if self.primary is not None else self.replica
        assert store is not None
        return store

    @property
    def local_root(self) -> str | None:
        return self.primary.root if self.primary is not None else None

    def close(self) -> None:
        """Close both stores; the outbox folder goes when nothing is left in it."""
        try:
            if self.primary is not None:
                self.primary.close()
        finally:
            if self.replica is not None:
                self.replica.close()
            if self.outbox is not None and not len(self.outbox):
                self.outbox.remove_if_empty()


def open_backend(
    root: str, url: str | None = None, api_key: str | None = None, *, keep_local: bool = False,
    timeout: float = 30.0,
) -> Backend:
    """The stores for ``url`` (None: local mode) and the dash root ``root``.

    ``keep_local`` with a ``url`` is hybrid mode. Nothing is created on disk here.
    """
    if not url:
        return Backend(LocalStore(root, scan_batch_ids=False), None, None, root)
    remote = RemoteStore(url, api_key, timeout=timeout)
    session = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"
    outbox = Outbox(os.path.join(root, SPOOL_FOLDER, host_key(remote.url), session), remote.url)
    primary = LocalStore(root, scan_batch_ids=False) if keep_local else None
    return Backend(primary, remote, outbox, root, api_key)
