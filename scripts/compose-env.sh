#!/usr/bin/env bash
# compose-env.sh — writes the .env docker compose reads (make compose-env):
# a random password for every account docker-compose.yml creates, and the
# subnet of the compose network (ClickHouse accepts its users only from it).
#
#   scripts/compose-env.sh [file]     default <repo>/.env
#
# Values already in the file are kept (Grafana stores its admin password in
# its volume at first start; changing it here later would not change it
# there), missing ones are added. The file is git-ignored and readable by
# its owner only. There are no default passwords: docker-compose.yml
# refuses to start without these values.
#
# It also prepares <repo>/.grafana, the folder the compose Grafana reads
# its provisioning from (mounted read-only at /etc/lcpipe/grafana):
# provisioning/ holds the shared files, copied afresh from
# dashboards/grafana/provisioning on every run, beside the per-organization
# ones `lcpipe analysts add --grafana-dir .grafana` writes (lcpipe-org-*,
# never touched here); secrets/ (mode 700) holds their passwords, mode
# 600. Grafana runs as GRAFANA_UID, the owner of those files, so it can
# read them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILE=${1:-$ROOT/.env}

# random prints 32 hex characters (128 bits) from the kernel's CSPRNG.
random() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# The variables, each with how its value is made and what it is for.
vars=(
  "LCPIPE_CLICKHOUSE_PASSWORD|random|ClickHouse user lcpipe (migrate, processor)"
  "ANALYST_CLICKHOUSE_PASSWORD|random|ClickHouse user analyst (read-only: dashboards, Grafana, SQL)"
  "GRAFANA_ADMIN_PASSWORD|random|Grafana user admin"
  "DASHBOARDS_TOKEN|random-optional|sign-in token of the built-in dashboards (open /?token=...; sees every organization); set it empty to use only Sign in with LiveChat"
  "LCPIPE_SUBNET|172.29.57.0/24|subnet of the compose network; change it if it clashes with a local network"
  "GRAFANA_UID|uid|user Grafana runs as: the owner of .grafana/secrets (lcpipe analysts add --grafana-dir writes them mode 600)"
)

umask 077
touch "$FILE"
chmod 600 "$FILE"
added=()
for v in "${vars[@]}"; do
  IFS='|' read -r name how help <<<"$v"
  # A password is written again when empty; an optional value left empty
  # on purpose stays empty.
  if grep -q "^$name=." "$FILE" || { [ "$how" = random-optional ] && grep -q "^$name=" "$FILE"; }; then continue; fi
  case $how in random | random-optional) value=$(random) ;; uid) value=$(id -u) ;; *) value=$how ;; esac
  sed -i "/^$name=/d" "$FILE" # an empty line for it would shadow the new one
  printf '# %s\n%s=%s\n' "$help" "$name" "$value" >>"$FILE"
  added+=("$name")
done
if [ ${#added[@]} -gt 0 ]; then
  echo "compose-env: wrote ${added[*]} to $FILE" >&2
else
  echo "compose-env: $FILE is complete" >&2
fi

# The Grafana provisioning tree (see the top of this file).
GRAFANA_DIR=$ROOT/.grafana
umask 022
mkdir -p "$GRAFANA_DIR/provisioning/datasources" "$GRAFANA_DIR/provisioning/dashboards" "$GRAFANA_DIR/dashboards"
mkdir -p -m 700 "$GRAFANA_DIR/secrets"
chmod 700 "$GRAFANA_DIR/secrets"
for kind in datasources dashboards; do
  find "$GRAFANA_DIR/provisioning/$kind" -maxdepth 1 -type f -name '*.yaml' ! -name 'lcpipe-org-*' -delete
  cp "$ROOT/dashboards/grafana/provisioning/$kind/"*.yaml "$GRAFANA_DIR/provisioning/$kind/"
done
