#!/usr/bin/env bash
# Installs what the live page's browser test (tests/it/live_page.rs) needs, only what is
# missing: Debian's Chromium (Playwright's own browser download is not used) and the pinned
# playwright-core in tests/browser (npm ci, from its package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-lib.sh
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
apt_install --no-install-recommends "${missing[@]}"
npm_ci_if_stale tests/browser
