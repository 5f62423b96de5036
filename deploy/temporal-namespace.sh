#!/bin/sh
# Registers the namespace and its custom search attributes, given as arguments
# (`--name K --type T ...`, from src/temporal/search-attributes.ts), with `temporal operator`.
# Safe to run again. docker-compose's temporal-search-attributes service runs it in the
# admin-tools image; the test suite and `LEDGERLOCK_TEMPORAL=server npm start` run the same
# file with the pinned CLI (src/stack/temporal-server.ts).
#
# Environment: TEMPORAL_ADDRESS (read by the CLI), TEMPORAL_NAMESPACE (default default),
# TLS_FLAGS (the CLI's mTLS flags, if any), TEMPORAL_CLI (default temporal).
set -eu
cli="${TEMPORAL_CLI:-temporal}"
ns="${TEMPORAL_NAMESPACE:-default}"
tls="${TLS_FLAGS:-}"
# shellcheck disable=SC2086 # TLS_FLAGS is a list of flags.
"$cli" operator namespace describe --namespace "$ns" $tls >/dev/null 2>&1 || "$cli" operator namespace create --namespace "$ns" $tls
# Every --name given is listed in $1 (the output of `search-attribute list`).
all_listed() {
  listed=$1
  shift
  while [ $# -gt 0 ]; do
    if [ "$1" = --name ]; then echo "$listed" | grep -qw -- "$2" || return 1; fi
    shift
  done
}
attempt=0
# shellcheck disable=SC2086
until "$cli" operator search-attribute create --namespace "$ns" $tls "$@"; do
  # Already registered by an earlier run: then every one is listed.
  # shellcheck disable=SC2086
  if listed=$("$cli" operator search-attribute list --namespace "$ns" $tls 2>/dev/null) && all_listed "$listed" "$@"; then break; fi
  # A namespace registered moments ago reaches every service once their namespace caches refresh (about 10 s).
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then echo "could not register the search attributes on $ns" >&2; exit 1; fi
  sleep 1
done
