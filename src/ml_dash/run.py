"""``RUN``: run attributes and prefix templates, as code written for the public ML-Dash SDK uses them.

``RUN``'s class attributes are the defaults (``RUN.project = "vision"`` changes them for
every later run); ``RUN(**overrides)`` makes one run's attributes, expands its ``{...}``
templates and splits its prefix into owner, project and name. ``exp.run`` of an
:class:`~ml_dash.Experiment` carries the same attributes (``ml_dash.experiment.Run``).
"""

from __future__ import annotations

import inspect
import os
import re
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT_FILES = ("pyproject.toml", "requirements.txt", "setup.py", "setup.cfg")
_EXP_TEMPLATE = re.compile(r"\{EXP\.(\w+)\}")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_EXPANSION_PASSES = 10


def find_project_root(start: str | os.PathLike[str] | None = None) -> str:
    """The first folder upwards from ``start`` (a file's folder; default the current
    folder) that holds pyproject.toml, requirements.txt, setup.py or setup.cfg; the
    current folder when none does."""
    here = Path.cwd() if start is None else Path(start).absolute()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if any((folder / name).exists() for name in PROJECT_ROOT_FILES):
            return str(folder)
    return str(Path.cwd())


# -- time-ordered ids ---------------------------------------------------------------------

_ID_EPOCH_MS = 1_704_067_200_000  # 2024-01-01 UTC: ids have 18 digits from late 2024 to 2031
_id_lock = threading.Lock()
_id_last = [0, 0]  # the millisecond and the sequence of the last id


def new_run_id() -> int:
    """A 64-bit id that grows with time (snowflake layout: 41 bits of milliseconds since
    2024, 10 bits of this process, 12 bits of sequence): unique within the process,
    ordered by creation, and printed as 18 digits in these years."""
    with _id_lock:
        ms = int(time.time() * 1000) - _ID_EPOCH_MS
        last_ms, seq = _id_last
        if ms <= last_ms:
            ms, seq = last_ms, seq + 1
            if seq >= 1 << 12:  # 4096 ids in one millisecond: borrow the next one
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _id_last[:] = [ms, seq]
    return (ms << 22) | ((os.getpid() & 0x3FF) << 12) | seq


# -- RUN ----------------------------------------------------------------------------------


def _default_user() -> str:
    return os.environ.get("ML_DASH_USER") or os.environ.get("USER") or "user"


def calling_script() -> str | None:
    """The file of the nearest caller outside this package (the user's script), or None
    (an interactive session). The public SDK resolves this to its own module."""
    frame = inspect.currentframe()
    while frame is not None:
        name = frame.f_globals.get("__file__")
        if name and not os.path.abspath(name).startswith(_PACKAGE_DIR + os.sep):
            return str(name)
        frame = frame.f_back
    return None


class RUN:
    """One run's attributes. The class attributes are the defaults.

    ``RUN(**overrides)``: ``entry`` defaults to the calling script and ``path_stem`` to
    that script relative to its project root (:func:`find_project_root`) without its
    extension; the instance takes the current ``RUN.job_counter`` and the class counter
    goes up by one; every string attribute holding ``{...}`` is expanded with
    ``str.format`` over the instance's attributes (repeatedly, up to 10 passes); then
    the prefix is split: first segment ``owner``, second ``project``, last ``name``.
    """

    user: str = _default_user()
    project: str = "{user}/scratch"
    prefix: str = os.environ.get("ML_DASH_PREFIX") or "{project}/{now:%Y/%m-%d}/{path_stem}/{job_name}"
    job_name: str = "{now:%H.%M.%S}/{job_counter:03d}"
    job_counter: int = 0
    now: datetime = datetime.now()
    id: int | None = None
    entry: str | None = None
    path_stem: str | None = None
    project_root: str | None = None
    readme: str | None = None
    owner: str | None = None
    name: str | None = None

    def __init__(self, **overrides: Any) -> None:
        init_run(self, type(self), ("user", "project", "prefix", "job_name", "job_counter", "now", "id", "entry",
                                    "path_stem", "project_root", "readme"), overrides)
        self._split_prefix()

    @property
    def date(self) -> str:
        """``now`` as ``YYYYMMDD``."""
        return self.now.strftime("%Y%m%d")

    @property
    def datetime_str(self) -> str:
        """``now`` as ``YYYYMMDD.HHMMSS``."""
        return self.now.strftime("%Y%m%d.%H%M%S")

    def _split_prefix(self) -> None:
        parts = str(self.prefix).strip("/").split("/")
        if len(parts) >= 2:
            self.owner = parts[0]
            self.project = parts[1]
            self.name = parts[-1]

    def _template_values(self) -> dict[str, Any]:
        values = {key: getattr(self, key) for key in dir(type(self)) if not key.startswith("_")}
        values.update(vars(self))
        values["date"], values["datetime_str"] = self.date, self.datetime_str
        return {k: v for k, v in values.items() if not callable(v) or isinstance(v, datetime)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r}, owner={self.owner!r}, name={self.name!r})"


def path_stem(entry: str, project_root: str | None) -> str:
    root = os.path.abspath(project_root or find_project_root(entry))
    path = os.path.abspath(entry)
    try:
        rel = os.path.relpath(path, root)
    except ValueError:  # another drive (Windows)
        rel = os.path.basename(path)
    if rel.startswith(".."):
        rel = os.path.basename(path)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def expand_templates(run: RUN) -> None:
    """Expand ``{...}`` in the string attributes of ``run`` with ``str.format`` over its
    attributes, until none is left (at most 10 passes). A name that is not an attribute
    raises AttributeError naming it."""
    for _ in range(_EXPANSION_PASSES):
        values = run._template_values()
        pending = {k: v for k, v in vars(run).items() if isinstance(v, str) and "{" in v and not k.startswith("_")}
        if not pending:
            return
        changed = False
        for key, text in pending.items():
            try:
                expanded = text.format(**values)
            except KeyError as exc:
                raise AttributeError(f"RUN has no attribute {exc.args[0]!r} (in {key} = {text!r})") from None
            if expanded != text:
                setattr(run, key, expanded)
                changed = True
        if not changed:
            return


def expand_exp_templates(text: str, run: Any) -> str:
    """``{EXP.attr}`` in ``text`` replaced by ``run.attr``; ``{EXP.id}`` first makes
    ``run.id`` when it has none. AttributeError names an unknown (or unset) attribute."""

    def value(match: re.Match[str]) -> str:
        attr = match.group(1)
        if attr == "id" and getattr(run, "id", None) is None:
            run.id = new_run_id()
        found = getattr(run, attr, None)
        if found is None:
            raise AttributeError(f"{{EXP.{attr}}}: the run has no attribute {attr!r}")
        return str(found)

    return _EXP_TEMPLATE.sub(value, text)


def init_run(run: Any, defaults: type[RUN], keys: Iterable[str], overrides: dict[str, Any]) -> None:
    """Give ``run`` the class defaults of ``defaults`` for ``keys``, then ``overrides``; fill
    in the entry script and its path stem, take a job counter (the class's goes up by
    one) and expand the ``{...}`` templates."""
    for key in keys:
        setattr(run, key, getattr(defaults, key))
    for key, value in overrides.items():
        setattr(run, key, value)
    if run.entry is None:
        run.entry = calling_script()
    if run.path_stem is None and run.entry is not None:
        run.path_stem = path_stem(str(run.entry), run.project_root)
    if isinstance(defaults.job_counter, int):
        defaults.job_counter += 1
    expand_templates(run)
