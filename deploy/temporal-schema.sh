#!/bin/sh
# Creates Temporal's persistence and visibility databases on PostgreSQL and migrates them
# to the schema version the admin-tools image ships. Safe to run again.
set -eu
for db in temporal temporal_visibility; do
  case "$db" in
    temporal) schema=/etc/temporal/schema/postgresql/v12/temporal/versioned ;;
    *) schema=/etc/temporal/schema/postgresql/v12/visibility/versioned ;;
  esac
  tool="temporal-sql-tool --plugin $SQL_PLUGIN --ep $SQL_HOST -p $SQL_PORT -u $SQL_USER --pw $SQL_PASSWORD --db $db"
  $tool create-database || true
  $tool setup-schema -v 0.0 || true
  $tool update-schema -d "$schema"
done
