#!/usr/bin/env bash
# Install the tools the test suite drives besides the services (scripts/services.sh), when missing:
#
#   chromium   Debian's Chromium, for the browser tests (Playwright for Python launches /usr/bin/chromium;
#              Playwright never downloads a browser of its own: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)
#   promtool   from Debian's prometheus package, to check the shipped alert rules (ops/prometheus/)
#
# Idempotent and instant when both are there: one `apt-get update` only when something is missing, and
# a temporary policy-rc.d so the prometheus package does not start a Prometheus server.
set -euo pipefail

log() { printf '[test-tools] %s\n' "$*"; }
die() { printf '[test-tools] ERROR: %s\n' "$*" >&2; exit 1; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

[ "$(id -u)" = 0 ] || die "missing ${missing[*]}: run as root (or install them) to let this script apt-get install them"
log "installing ${missing[*]} from Debian's packages"
added_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
fi
trap '[ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" fonts-liberation >/dev/null
log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium?); $(promtool --version 2>&1 | head -1)"
