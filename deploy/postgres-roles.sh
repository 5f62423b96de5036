#!/bin/sh
# Runs once, as the PostgreSQL superuser, when the postgres image initialises an empty data
# volume (/docker-entrypoint-initdb.d). Creates one LOGIN role per job and nothing more:
#   ledgerlock_owner  owns the ledgerlock database and its tables; used only by `migrate`
#   ledgerlock_app    the api, worker and codec server: only what the migrations grant it
#                     (INSERT and SELECT on audit_log), owns nothing, member of no role
#   temporal          owns Temporal's two databases, reaches no other
# None is a superuser or may create roles or databases. The superuser itself is used by
# nothing after this script.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_password="$LEDGERLOCK_OWNER_DB_PASSWORD" \
  -v app_password="$LEDGERLOCK_APP_DB_PASSWORD" \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE ledgerlock_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';
CREATE ROLE ledgerlock_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'app_password';
CREATE ROLE temporal LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'temporal_password';

CREATE DATABASE ledgerlock OWNER ledgerlock_owner;
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;

-- Each role reaches its own databases only.
REVOKE ALL ON DATABASE ledgerlock, temporal, temporal_visibility FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE ledgerlock TO ledgerlock_owner;
GRANT CONNECT ON DATABASE ledgerlock TO ledgerlock_app;
GRANT CONNECT, TEMPORARY ON DATABASE temporal, temporal_visibility TO temporal;
SQL
