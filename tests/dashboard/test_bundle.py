"""The committed dashboard bundle: built from the current frontend sources, small, self-contained,
and served with its security and cache headers. No Node needed: the source hash is recomputed here
exactly as ``frontend/scripts/source-hash.mjs`` computes it at build time."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_dash.dashboard import STATIC
from support.app import AppClient, app_client

REPO = Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
# The same inputs as scripts/source-hash.mjs (INPUTS and TREES there).
INPUTS = ("index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts",
          "scripts/source-hash.mjs")
TREES = ("src", "public")
BUDGET = 100 * 1024  # bytes of JS + CSS, gzipped


def source_hash(frontend: Path) -> str:
    """sha256 over "<path>\\0<sha256 of the file>\\n" for every input, paths sorted by their UTF-8 bytes."""
    names = list(INPUTS)
    for tree in TREES:
        names += [p.relative_to(frontend).as_posix() for p in (frontend / tree).rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for name in sorted(names, key=lambda n: n.encode()):
        digest.update(f"{name}\0{hashlib.sha256((frontend / name).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def bundle_files() -> list[Path]:
    manifest = json.loads((STATIC / "manifest.json").read_text())
    return [STATIC / entry["file"] for entry in manifest.values()]


def test_bundle_was_built_from_the_current_frontend_sources() -> None:
    if not (FRONTEND / "package.json").is_file():
        pytest.skip("no frontend/ sources here (an installed package)")
    recorded = (STATIC / "SOURCE_HASH").read_text().strip()
    assert recorded == source_hash(FRONTEND), (
        "src/ml_dash/dashboard/static is stale: rebuild it with `cd frontend && npm ci && npm run build` and commit it"
    )


def test_bundle_is_complete_and_under_100_kb_gzipped() -> None:
    files = bundle_files()
    assert {f.suffix for f in files} == {".js", ".css"}
    index = (STATIC / "index.html").read_text()
    for f in files:
        assert f.is_file(), f
        assert f"/{f.relative_to(STATIC).as_posix()}" in index
    assert {p.name for p in (STATIC / "assets").iterdir()} == {f.name for f in files}, "stale files in static/assets"
    size = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    assert size <= BUDGET, f"JS + CSS is {size} bytes gzipped, over the budget of {BUDGET}"


def test_page_loads_nothing_from_elsewhere_and_has_no_inline_script() -> None:
    index = (STATIC / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", index, re.S)
    assert scripts and all(body.strip() == "" for body in scripts), "inline script in index.html"
    for url in re.findall(r"""(?:src|href)=["']([^"']+)""", index):
        assert url.startswith("/") and not url.startswith("//"), url
    for f in bundle_files():
        text = f.read_text()
        assert "sourceMappingURL" not in text
        assert not re.search(r"""(?:import\(|from\s*)["']https?:""", text), f"{f.name} imports from the network"
        assert "@import" not in text or f.suffix != ".css"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[AppClient]:
    c, _store = app_client(tmp_path / ".dash")
    yield c
    c.close()


@pytest.mark.parametrize("path", ["/", "/runs", "/runs/alice/vision", "/run/alice/vision/resnet/run-1",
                                  "/compare?r=alice/vision/run-1"])
def test_page_paths_answer_the_page_with_a_csp_forbidding_inline_scripts(client: AppClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<div id="app">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"


def test_assets_are_cached_for_a_year_and_sent_gzipped(client: AppClient) -> None:
    for f in bundle_files():
        r = client.get(f"/assets/{f.name}", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["content-encoding"] == "gzip"
        assert r.content == f.read_bytes()  # httpx undoes the gzip
        assert r.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
        plain = client.get(f"/assets/{f.name}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == f.read_bytes()


@pytest.mark.parametrize("path", ["/assets/nope.js", "/assets/..%2Fmanifest.json", "/assets/.hidden",
                                  "/assets/%2e%2e%2f%2e%2e%2fpyproject.toml"])
def test_unknown_assets_are_a_json_404(client: AppClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


def test_the_page_never_shadows_the_api(client: AppClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    missing = client.get("/api/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert client.post("/api/v1/no-such-route", json={}).status_code == 404
    assert client.get("/elsewhere").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith(("/runs", "/run/", "/assets")) for p in paths)
