#!/usr/bin/env bash
# Rebuild the dashboard from the lockfile and fail when the result differs from the
# bundle committed in src/ml_dash/dashboard/static (changed, added or removed files).
# Needs Node 20+ and npm; run from anywhere (CI: `bash frontend/check-bundle.sh`).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm test
npm run build
cd ..
static=src/ml_dash/dashboard/static
if ! git diff --exit-code --stat -- "$static" || [ -n "$(git status --porcelain --untracked-files=all -- "$static")" ]; then
  git status --short --untracked-files=all -- "$static"
  echo "dashboard: the committed bundle differs from a fresh build: run 'cd frontend && npm ci && npm run build' and commit $static" >&2
  exit 1
fi
echo "dashboard: the committed bundle matches a fresh build"
