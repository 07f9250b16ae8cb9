# Sourced by scripts/services.sh and scripts/test-tools.sh: install Debian packages that are missing.
#
#   apt_install <tag> <package>...
#
# Runs `apt-get update` at most once per machine set-up: not again within the hour after a successful
# update of its own (a stamp beside the lists; apt dates the list files by the mirror's Last-Modified,
# so their mtimes cannot tell), so `make test` on a fresh machine updates once.
# Maintainer scripts may not start services with their own defaults (Redis with persistence, RabbitMQ
# on every interface, a Prometheus server): a temporary policy-rc.d refuses them; the callers start
# what they need as configured.

APT_UPDATED_STAMP=/var/lib/apt/lists/.sentinai-updated

apt_lists_fresh() {
  [ -n "$(find "$APT_UPDATED_STAMP" -mmin -60 -print 2>/dev/null)" ]
}

apt_install() {
  local tag=$1; shift
  [ "$#" -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    printf '[%s] ERROR: missing %s: run as root (or install them) to let this script apt-get install them\n' \
      "$tag" "$*" >&2
    exit 1
  fi
  printf '[%s] installing %s from Debian'"'"'s packages\n' "$tag" "$*"
  local added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local status=0
  {
    apt_lists_fresh || { apt-get -o DPkg::Lock::Timeout=300 update -qq && touch "$APT_UPDATED_STAMP"; }
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >/dev/null
  } || status=$?
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return $status
}
