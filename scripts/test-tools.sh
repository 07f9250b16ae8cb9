#!/usr/bin/env bash
# Install the tools the test suite drives besides the services (scripts/services.sh), when missing:
#
#   chromium   Debian's Chromium, for the browser tests (Playwright for Python launches /usr/bin/chromium;
#              Playwright never downloads a browser of its own: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)
#   promtool   from Debian's prometheus package, to check the shipped alert rules (ops/prometheus/)
#
# Idempotent and instant when both are there; the install is scripts/lib/apt.sh's (no second `apt-get
# update` right after services.sh's, and the prometheus package does not start a Prometheus server).
set -euo pipefail

log() { printf '[test-tools] %s\n' "$*"; }
die() { printf '[test-tools] ERROR: %s\n' "$*" >&2; exit 1; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

. "$(dirname "$0")/lib/apt.sh"
apt_install test-tools "${missing[@]}" fonts-liberation
log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium?); $(promtool --version 2>&1 | head -1)"
