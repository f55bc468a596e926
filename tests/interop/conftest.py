"""The public ML-Dash SDK (PyPI ``ml-dash==0.11.0``) in its own throwaway virtual
environment, built once per session; tests that need it are skipped, with the reason,
when it cannot be installed (no network, no index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PUBLIC_SDK = "ml-dash==0.11.0"


class PublicSDK:
    """Runs scripts with the public SDK's interpreter, in fresh processes."""

    def __init__(self, python: Path) -> None:
        self.python = python

    def run(self, script: str, cwd: Path, **values: Any) -> Any:
        """Run ``script`` (``VALUES`` holds ``values``); it prints one JSON value last,
        which is returned. The process fails the test if it fails."""
        code = f"import json\nVALUES = json.loads({json.dumps(json.dumps(values))})\n" + textwrap.dedent(script)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_DASH_", "PYTHON"))}
        done = subprocess.run(
            [str(self.python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"public SDK script failed:\n{done.stdout}\n{done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def public_sdk(tmp_path_factory: pytest.TempPathFactory) -> PublicSDK:
    venv = tmp_path_factory.mktemp("public-sdk") / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        python = venv / "bin" / "python"
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PUBLIC_SDK],
            capture_output=True, text=True, timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot build a virtual environment for {PUBLIC_SDK}: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot install {PUBLIC_SDK} from the package index: {done.stderr.strip()[-300:]}")
    return PublicSDK(python)
