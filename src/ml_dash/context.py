"""Run context: where a run came from, captured once when it starts.

The context is one plain dict stored in the experiment's metadata under ``"context"``
(``experiment.json`` locally, the experiment document on MongoDB, ``metadata`` in the
server's ``/api/v1/experiment`` answer), so it travels through every store without a
route of its own. docs/run-context.md lists its keys.

Capture is cheap by design (measured in benchmarks/bench_context.py): git is asked
once — ``git status`` and ``git config`` run side by side, started before the run's
claim and read after it, with a timeout — package versions come from modules that are
already imported (nothing is imported or scanned), and NVIDIA's library is only asked
when it is importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidValueError

PARTS = ("git", "command", "python", "host", "packages", "gpu", "env")
GIT_TIMEOUT = 1.0  # seconds for both git calls together; a slower git leaves an "error" in context.git

# Environment variables recorded by default: where and how the job ran, never secrets.
DEFAULT_ENV_ALLOW = (
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "PYTHONHASHSEED", "VIRTUAL_ENV", "CONDA_DEFAULT_ENV",
    "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NODELIST",
    "SLURM_NTASKS", "PBS_JOBID", "LSB_JOBID",
    "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
)
# A variable whose name contains one of these (any case) is never recorded, even when
# the allow-list names it: tokens, keys, passwords and the like.
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|PWD|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE|SIGNATURE|CERT",
                         re.IGNORECASE)
REDACTED = "<redacted>"
_MAX_VALUE = 1000  # characters kept of one environment variable or argument

# Modules whose version is recorded when the run starts and they are imported already.
PACKAGES = (
    "ml_dash", "numpy", "torch", "torchvision", "torchaudio", "jax", "flax", "tensorflow", "keras",
    "lightning", "pytorch_lightning", "transformers", "accelerate", "datasets", "sklearn", "scipy",
    "pandas", "xgboost", "lightgbm", "deepspeed",
)
_OFF = ("0", "false", "no", "off", "none", "")
_ON = ("1", "true", "yes", "on", "all")


def parts_from(setting: bool | str | Iterable[str] | None) -> frozenset[str]:
    """The parts to capture for the ``context=`` keyword (None: ``$ML_DASH_CONTEXT``).

    True/"all"/"1" is every part, False/"0"/"off" none; a collection or a comma list
    names parts (``"git,python"``); names with a leading ``-`` are left out of all the
    others (``"-gpu,-env"``). InvalidValueError names an unknown part.
    """
    if setting is None:
        setting = os.environ.get("ML_DASH_CONTEXT", "1")
    if isinstance(setting, bool):
        return frozenset(PARTS) if setting else frozenset()
    if isinstance(setting, str):
        lowered = setting.strip().lower()
        if lowered in _ON:
            return frozenset(PARTS)
        if lowered in _OFF:
            return frozenset()
        names = [n.strip() for n in lowered.split(",") if n.strip()]
    else:
        names = [str(n).strip().lower() for n in setting]
    unknown = [n for n in names if n.lstrip("-") not in PARTS]
    if unknown:
        raise InvalidValueError(f"context: unknown part {unknown[0]!r}; the parts are {', '.join(PARTS)}")
    excluded = {n[1:] for n in names if n.startswith("-")}
    included = {n for n in names if not n.startswith("-")} or set(PARTS)
    return frozenset(included - excluded)


def env_allow_from(names: Iterable[str] | None) -> tuple[str, ...]:
    """The allow-list for the ``context_env=`` keyword (None: ``$ML_DASH_CONTEXT_ENV``, a
    comma list, else :data:`DEFAULT_ENV_ALLOW`). Names may hold ``*`` (``"SLURM_*"``)."""
    if names is None:
        given = os.environ.get("ML_DASH_CONTEXT_ENV")
        if given is None:
            return DEFAULT_ENV_ALLOW
        names = given.split(",")
    if isinstance(names, str):
        raise InvalidValueError(f"context_env must be a list of variable names, got the string {names!r}")
    return tuple(n.strip() for n in names if n.strip())


def strip_credentials(url: str) -> str:
    """``url`` without user name, password or query (``https://user:tok@host/r.git`` ->
    ``https://host/r.git``). scp-like git addresses (``git@host:r.git``) stay as they are."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return REDACTED
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _clean_value(value: str) -> str:
    value = value[:_MAX_VALUE]
    return strip_credentials(value) if "://" in value and "@" in value else value


def environment(allow: Iterable[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (default ``os.environ``) that the allow-list names
    and whose names look like no secret (:data:`SECRET_NAME`); URLs lose credentials."""
    environ = dict(os.environ) if environ is None else environ
    patterns = tuple(allow)
    return {
        name: _clean_value(value)
        for name, value in sorted(environ.items())
        if any(fnmatchcase(name, p) for p in patterns) and not SECRET_NAME.search(name)
    }


def redact_argv(argv: Iterable[str]) -> list[str]:
    """``argv`` with the values of secret-looking options hidden: ``--api-key=x`` and
    ``--token x`` become ``--api-key=<redacted>`` and ``--token <redacted>``."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-"):
            name, eq, _ = arg.partition("=")
            if SECRET_NAME.search(name):
                if eq:
                    out.append(f"{name}={REDACTED}")
                else:
                    out.append(arg)
                    hide_next = True
                continue
        out.append(_clean_value(arg))
    return out


def packages() -> dict[str, str]:
    """Versions of the :data:`PACKAGES` that are imported now (nothing is imported)."""
    found: dict[str, str] = {}
    for name in PACKAGES:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if isinstance(version, str):
            found[name] = version
    return found


def gpus() -> dict[str, Any] | None:
    """NVIDIA driver and device names through ``pynvml`` (package nvidia-ml-py), or None
    when it is not importable or finds no driver."""
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        nvml: Any = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:
        return None
    try:
        devices = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                            "memoryTotal": int(memory.total)})
        driver = nvml.nvmlSystemGetDriverVersion()
        return {"driver": driver.decode() if isinstance(driver, bytes) else str(driver), "devices": devices}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


class GitProbe:
    """The two git calls, started at once and read later (:meth:`result`)."""

    def __init__(self, folder: str, timeout: float = GIT_TIMEOUT) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        # No optional locks: status must not take index.lock under a user's own git command.
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.error: str | None = None
        try:
            for args in (["status", "--porcelain=v2", "--branch", "--untracked-files=no"],
                         ["config", "--get-regexp", r"^remote\..*\.url$"]):
                self.procs.append(subprocess.Popen(["git", *args], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
        except OSError as exc:  # no git on PATH, or the folder is gone
            self.error = f"git could not run: {exc}"
            self._kill()

    def abandon(self) -> None:
        """Kill the git calls still running and forget them."""
        self._kill()
        self.error = "abandoned"

    def _kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def result(self) -> dict[str, Any] | None:
        """``{"commit", "branch", "dirty", "remote"}`` (None when the folder is not in a
        git work tree; ``{"error": ...}`` when git failed or took too long)."""
        if self.error is not None:
            return None
        outputs: list[tuple[int, str]] = []
        try:
            for proc in self.procs:
                out, _ = proc.communicate(timeout=max(0.0, self.deadline - time.monotonic()))
                outputs.append((proc.returncode, out.decode("utf-8", "replace")))
        except subprocess.TimeoutExpired:
            self._kill()
            return {"error": f"git did not answer within {self.timeout:g} s"}
        (status_rc, status), (_, remotes) = outputs
        if status_rc != 0:
            return None
        return _parse_git(status, remotes)


def _parse_git(status: str, remotes: str) -> dict[str, Any]:
    git: dict[str, Any] = {"commit": None, "branch": None, "dirty": False}
    upstream_remote = None
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line[len("# branch.oid "):]
            git["commit"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line[len("# branch.head "):]
            git["branch"] = None if head == "(detached)" else head
        elif line.startswith("# branch.upstream "):
            upstream_remote = line[len("# branch.upstream "):].split("/", 1)[0]
        elif line and not line.startswith("#"):
            git["dirty"] = True
    urls: dict[str, str] = {}
    for line in remotes.splitlines():
        key, _, url = line.partition(" ")
        urls[key[len("remote."):-len(".url")]] = url.strip()
    remote = urls.get(upstream_remote or "origin") or urls.get("origin") or next(iter(urls.values()), None)
    git["remote"] = strip_credentials(remote) if remote else None
    return git


@dataclass
class ContextCapture:
    """One capture: :meth:`begin` starts what runs in the background (git), :meth:`finish`
    collects everything into the context dict."""

    parts: frozenset[str]
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    entry: str | None = None
    git_timeout: float = GIT_TIMEOUT
    _git: GitProbe | None = None

    def begin(self) -> ContextCapture:
        if "git" in self.parts:
            self._git = GitProbe(self._code_folder(), self.git_timeout)
        return self

    def abandon(self) -> None:
        """The start failed: stop what :meth:`begin` started."""
        if self._git is not None:
            self._git.abandon()
            self._git = None

    def _code_folder(self) -> str:
        """The entry script's folder (the code that runs), else the working folder."""
        if self.entry and os.path.isfile(self.entry):
            return os.path.dirname(os.path.abspath(self.entry))
        return os.getcwd()

    def finish(self) -> dict[str, Any]:
        """The context dict: ``capturedAt`` and one key per captured part (a part that
        does not apply, e.g. git outside a repository, is left out)."""
        parts = self.parts
        context: dict[str, Any] = {"capturedAt": time.time()}
        if "command" in parts:
            context["command"] = {
                "argv": redact_argv(sys.argv),
                "entry": os.path.abspath(self.entry) if self.entry else None,
                "cwd": os.getcwd(),
            }
        if "python" in parts:
            context["python"] = {"version": platform.python_version(), "implementation":
                                 platform.python_implementation(), "executable": sys.executable}
        if "host" in parts:
            context["host"] = {"name": socket.gethostname(), "platform": sys.platform,
                               "machine": platform.machine(), "cpus": os.cpu_count()}
        if "packages" in parts:
            context["packages"] = packages()
        if "env" in parts:
            context["env"] = environment(self.env_allow)
        if "gpu" in parts:
            gpu = gpus()
            if gpu is not None:
                context["gpu"] = gpu
        if self._git is not None:
            git = self._git.result()
            if git is not None:
                context["git"] = git
        return context


def capture(parts: Iterable[str] = PARTS, env_allow: Iterable[str] = DEFAULT_ENV_ALLOW, entry: str | None = None,
            git_timeout: float = GIT_TIMEOUT) -> dict[str, Any]:
    """Capture the run context now (what :class:`~ml_dash.Experiment` stores at start)."""
    return ContextCapture(frozenset(parts), tuple(env_allow), entry, git_timeout).begin().finish()
