#!/bin/sh
# Creates Temporal's persistence and visibility databases on PostgreSQL and migrates them to
# the schema version the server release ships. Safe to run again. docker-compose's
# temporal-schema service runs it in the admin-tools image; the test suite and
# `LEDGERLOCK_TEMPORAL=server npm start` run the same file with the pinned temporal-sql-tool
# and the Go module's schema folder (src/stack/temporal-server.ts).
#
# Environment: SQL_PLUGIN, SQL_HOST, SQL_PORT, SQL_USER, SQL_PASSWORD (read by temporal-sql-tool
# itself, so the password never appears on a command line); TEMPORAL_DB and
# TEMPORAL_VISIBILITY_DB (default temporal, temporal_visibility); TEMPORAL_SCHEMA_DIR (default
# the admin-tools image's /etc/temporal/schema); TEMPORAL_SQL_TOOL (default temporal-sql-tool).
set -eu
tool="${TEMPORAL_SQL_TOOL:-temporal-sql-tool}"
schema_root="${TEMPORAL_SCHEMA_DIR:-/etc/temporal/schema}/postgresql/v12"
migrate() {
  SQL_DATABASE="$1"
  export SQL_DATABASE
  # The database may exist already (deploy/postgres-roles.sh creates it, owned by SQL_USER).
  "$tool" create-database || true
  # Fails harmlessly once the schema version table exists.
  "$tool" setup-schema -v 0.0 || true
  "$tool" update-schema -d "$schema_root/$2/versioned"
}
migrate "${TEMPORAL_DB:-temporal}" temporal
migrate "${TEMPORAL_VISIBILITY_DB:-temporal_visibility}" visibility
