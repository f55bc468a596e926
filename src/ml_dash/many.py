"""Many experiments at once: ``ml_dash.open_many(where, root=…)`` and their streams as tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from . import frames
from .names import validate_name
from .reading import ExperimentReader, open_store
from .stores.base import Store
from .summaries import RunSummary, select_runs


class StreamSet:
    """One metric stream of every experiment of an :class:`ExperimentSet`
    (experiments without that stream add no rows)."""

    def __init__(self, store: Store, prefixes: list[str], name: str) -> None:
        self._store, self.prefixes, self.name = store, prefixes, name

    def _parts(self) -> Iterator[tuple[str, frames.Columns]]:
        for prefix in self.prefixes:
            cols = frames.metric_columns(self._store, prefix, self.name)
            if cols["index"]:
                yield prefix, cols

    def columns(self, shape: str = "long") -> frames.Columns:
        """The table as columns (lists): ``shape="long"`` gives ``experiment, stream,
        index, time, field, value`` (one row per numeric value), ``"wide"`` gives
        ``experiment, index, time`` and one column per field."""
        if frames.check_shape(shape) == "wide":
            return frames.wide_columns(self._parts())
        return frames.long_columns((prefix, self.name, cols) for prefix, cols in self._parts())

    def to_pandas(self, shape: str = "long") -> Any:
        """One DataFrame of this stream over every experiment, long or wide (see
        :meth:`columns`). Needs ``ml-dash[pandas]``."""
        return frames.to_pandas(self.columns(shape))

    def to_arrow(self, shape: str = "long") -> Any:
        """One ``pyarrow.Table``, long or wide (see :meth:`columns`). Needs ``ml-dash[arrow]``."""
        return frames.to_arrow(self.columns(shape))

    def __repr__(self) -> str:
        return f"StreamSet({self.name!r}, {len(self.prefixes)} experiments)"


class ExperimentSet:
    """The experiments a filter selected, read-only (``ml_dash.open_many``): iterate
    for :class:`ExperimentReader` handles; ``.metrics(name)`` for tables over all of
    them. Close it (or use ``with``) to let go of the folder or connection."""

    def __init__(self, store: Store, summaries: list[RunSummary]) -> None:
        self.store = store
        self.summaries = summaries
        self.prefixes = [s.info.prefix for s in summaries]

    def metrics(self, name: str) -> StreamSet:
        """The metric stream ``name`` of every experiment in the set."""
        validate_name(name, "metric name")
        return StreamSet(self.store, self.prefixes, name)

    def __iter__(self) -> Iterator[ExperimentReader]:
        for prefix in self.prefixes:
            yield ExperimentReader(self.store, prefix, owns_store=False)

    def __len__(self) -> int:
        return len(self.prefixes)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ExperimentSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExperimentSet({len(self.prefixes)} experiments)"


def open_many(
    where: str | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    url: str | None = None,
    api_key: str | None = None,
    owner: str | None = None,
    project: str | None = None,
    sort: str | None = None,
    descending: bool = False,
    limit: int = 10_000,
    timeout: float = 30.0,
) -> ExperimentSet:
    """The experiments that pass the filter ``where`` (docs/filters.md), in the folder
    ``root`` or on the server ``url``, as an :class:`ExperimentSet` (sorted by ``sort``,
    default creation time). An empty set when none passes; nothing is written."""
    store = open_store(root, url, api_key, timeout)
    try:
        page, _ = select_runs(store.run_summaries(owner, project), where, sort, descending, 0, limit)
    except BaseException:
        store.close()
        raise
    return ExperimentSet(store, page)
