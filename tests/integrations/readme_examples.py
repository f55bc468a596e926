"""The README's framework examples are ```py blocks (test_readme.py runs only the
```python ones, which must not need a framework); these helpers run them here."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example(marker: str) -> str:
    """The one ```py block of the README that contains ``marker``."""
    blocks = [b for b in re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S) if marker in b]
    assert len(blocks) == 1, f"expected one ```py block with {marker!r} in the README, found {len(blocks)}"
    return blocks[0]


def run_example(code: str) -> list[str]:
    """Run ``code`` in the current folder; assert that it prints what its ``print(...)  # x``
    comments say, and return the printed lines."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    printed = out.getvalue().strip().splitlines()
    expected = [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s+# (.+)$", code, flags=re.M)]
    assert expected, "the example prints nothing to check"
    assert printed[-len(expected):] == expected  # frameworks may print before
    return printed
