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
# shellcheck disable=SC2086
if ! "$cli" operator search-attribute create --namespace "$ns" $tls "$@"; then
  # Already registered by an earlier run: every one must be listed now.
  listed=$("$cli" operator search-attribute list --namespace "$ns" $tls)
  while [ $# -gt 0 ]; do
    if [ "$1" = --name ]; then echo "$listed" | grep -qw -- "$2" || { echo "search attribute $2 missing" >&2; exit 1; }; fi
    shift
  done
fi
