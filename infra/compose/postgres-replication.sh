#!/bin/sh
# Run once by the postgres image on an empty volume (docker-compose.cluster.yml): let the admin
# stream WAL to the hot standby over the compose network (decision 0037).
set -eu
echo "host replication postgres all scram-sha-256" >> "$PGDATA/pg_hba.conf"
