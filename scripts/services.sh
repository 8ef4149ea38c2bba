#!/usr/bin/env bash
# services.sh — starts and stops the real local services the pipeline needs:
# a single-node Apache Kafka broker (KRaft) whose jars come from Maven Central,
# and Debian's clickhouse-server with a project-owned config. Both run on
# loopback with their data under $RUN_DIR (default .run/, git-ignored).
#
#   scripts/services.sh up   [kafka|clickhouse]   start (no-op when running)
#   scripts/services.sh down [kafka|clickhouse]   stop by PID file
#   scripts/services.sh status
#   scripts/services.sh install                   install/download only
#
# Environment (all optional):
#   KAFKA_BROKERS / CLICKHOUSE_ADDR   when set, point at existing services:
#                                     nothing is started for that service
#   RUN_DIR            state folder (default <repo>/.run)
#   KAFKA_PORT         broker port (default 9092); controller = KAFKA_PORT+1
#   CH_TCP_PORT        ClickHouse native port (default 9000)
#   CH_HTTP_PORT       ClickHouse HTTP port (default 8123)
#   KAFKA_HEAP         JVM heap flags (default "-Xms256m -Xmx768m")
# TLS (off unless set; `make services-up` stays plaintext, the integration
# tests of TLS and SASL start private instances with these):
#   KAFKA_SSL_PORT     port of an extra SASL_SSL listener (SASL PLAIN,
#                      SCRAM-SHA-256 and SCRAM-SHA-512 over TLS)
#   KAFKA_SSL_KEYSTORE PEM file: the broker's unencrypted PKCS#8 private key
#                      and its certificate chain
#   KAFKA_SSL_CLIENT_CA  PEM CA file: when set, SASL_SSL clients present a
#                      certificate it signed, KAFKA_SSL_CLIENT_AUTH=required
#                      (default) or only when they have one (requested)
#   KAFKA_SASL_USERS   user:password,... accepted on the SASL_SSL listener
#                      (PLAIN and both SCRAM mechanisms)
#   CH_TCP_SECURE_PORT ClickHouse native port over TLS
#   CH_SSL_CERT / CH_SSL_KEY  PEM certificate (chain) and key for it
# Several instances can run side by side with other ports and RUN_DIR
# (the integration tests that kill a service use a private instance).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
CH_TCP_PORT=${CH_TCP_PORT:-9000}
CH_HTTP_PORT=${CH_HTTP_PORT:-8123}
KAFKA_HEAP=${KAFKA_HEAP:-"-Xms256m -Xmx768m"}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
CACHE_DIR=${LCPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lcpipe}
KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_alive() { # pidfile
  [ -f "$1" ] || return 1
  local pid; pid=$(cat "$1" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() { # packages...
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  if [ ! -f /var/lib/apt/lists/lock ] || [ -z "$(ls /var/lib/apt/lists/*_Packages 2>/dev/null | head -1)" ]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

fail_with_log() { # logfile message
  log "$2"
  if [ -f "$1" ]; then log "last lines of $1:"; tail -n 40 "$1" >&2; fi
  exit 1
}

# ---------------------------------------------------------------- Kafka ----
install_kafka() {
  if [ -f "$KAFKA_LIBS/.complete" ]; then return 0; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime >&2 || die "mvn could not resolve the Kafka jars"
  touch "$KAFKA_LIBS/.complete"
}

kafka_java() { # main-class args...
  local cls=$1; shift
  java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$cls" "$@"
}

kafka_up() {
  if [ -n "${KAFKA_BROKERS:-}" ]; then log "KAFKA_BROKERS=$KAFKA_BROKERS is set: not starting Kafka"; return 0; fi
  local dir=$RUN_DIR/kafka pidf=$RUN_DIR/kafka.pid logf=$RUN_DIR/kafka.log
  if pid_alive "$pidf"; then log "Kafka already running (pid $(cat "$pidf")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  rm -f "$pidf"
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set KAFKA_BROKERS to use it or KAFKA_PORT to move"
  install_kafka
  mkdir -p "$dir/data"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
  local advertised="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [ -n "${KAFKA_SSL_PORT:-}" ]; then
    [ -f "${KAFKA_SSL_KEYSTORE:-}" ] || die "KAFKA_SSL_PORT needs KAFKA_SSL_KEYSTORE (PEM key and certificate chain)"
    listeners="$listeners,SASL_SSL://127.0.0.1:$KAFKA_SSL_PORT"
    advertised="$advertised,SASL_SSL://127.0.0.1:$KAFKA_SSL_PORT"
    protocols="$protocols,SASL_SSL:SASL_SSL"
  fi
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=-1
log.retention.bytes=-1
PROPS
  local scram=()
  [ -n "${KAFKA_SSL_PORT:-}" ] && kafka_sasl_ssl_props "$dir/server.properties" scram
  if [ ! -f "$dir/data/meta.properties" ]; then
    log "formatting KRaft storage in $dir/data"
    kafka_java kafka.tools.StorageTool format -t "$(cat /proc/sys/kernel/random/uuid | tr -d - | head -c 22)" \
      -c "$dir/server.properties" --ignore-formatted ${scram[@]+"${scram[@]}"} >>"$logf" 2>&1 || fail_with_log "$logf" "formatting Kafka storage failed"
  fi
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (log $logf)"
  nohup java $KAFKA_HEAP -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >>"$logf" 2>&1 &
  echo $! > "$pidf"
  wait_kafka "$pidf" "$logf"
}

# kafka_sasl_ssl_props appends the SASL_SSL listener's settings to the
# properties file and fills the named array with the StorageTool arguments
# that create the SCRAM credentials: in KRaft they live in the metadata log,
# written when the storage is formatted (no broker round trip needed).
kafka_sasl_ssl_props() { # properties-file array-name
  local props=$1 pl="listener.name.sasl_ssl" jaas="" u name pass
  local -n args=$2
  # PLAIN users are listed in the JAAS config; SCRAM users are credentials.
  IFS=, read -ra users <<<"${KAFKA_SASL_USERS:-}"
  for u in ${users[@]+"${users[@]}"}; do
    name=${u%%:*}; pass=${u#*:}
    jaas="$jaas user_$name=\"$pass\""
    args+=(--add-scram "SCRAM-SHA-256=[name=$name,password=$pass]" --add-scram "SCRAM-SHA-512=[name=$name,password=$pass]")
  done
  cat >> "$props" <<PROPS
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
$pl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$jaas;
$pl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
$pl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
$pl.ssl.keystore.type=PEM
$pl.ssl.keystore.location=$KAFKA_SSL_KEYSTORE
PROPS
  if [ -n "${KAFKA_SSL_CLIENT_CA:-}" ]; then
    cat >> "$props" <<PROPS
$pl.ssl.truststore.type=PEM
$pl.ssl.truststore.location=$KAFKA_SSL_CLIENT_CA
$pl.ssl.client.auth=${KAFKA_SSL_CLIENT_AUTH:-required}
PROPS
  fi
}

wait_kafka() {
  local pidf=$1 logf=$2 i
  for i in $(seq 1 120); do
    pid_alive "$pidf" || fail_with_log "$logf" "Kafka exited during start"
    if port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$logf" 2>/dev/null; then
      if ! command -v kcat >/dev/null || kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 3 >/dev/null 2>&1; then
        log "Kafka is answering metadata requests on 127.0.0.1:$KAFKA_PORT"; return 0
      fi
    fi
    sleep 0.5
  done
  fail_with_log "$logf" "Kafka did not answer within 60 s"
}

# ----------------------------------------------------------- ClickHouse ----
install_clickhouse() {
  command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null && return 0
  apt_install clickhouse-server clickhouse-client
}

clickhouse_up() {
  if [ -n "${CLICKHOUSE_ADDR:-}" ]; then log "CLICKHOUSE_ADDR=$CLICKHOUSE_ADDR is set: not starting ClickHouse"; return 0; fi
  local dir=$RUN_DIR/clickhouse pidf=$RUN_DIR/clickhouse.pid logf=$RUN_DIR/clickhouse.log
  if pid_alive "$pidf"; then log "ClickHouse already running (pid $(cat "$pidf")) on 127.0.0.1:$CH_TCP_PORT"; return 0; fi
  rm -f "$pidf"
  port_open "$CH_TCP_PORT" && die "port $CH_TCP_PORT is taken by another process; set CLICKHOUSE_ADDR to use it or CH_TCP_PORT to move"
  install_clickhouse
  mkdir -p "$dir/data/" "$dir/tmp/" "$dir/user_files/" "$dir/format_schemas/"
  sed -e "s#@DIR@#$dir#g" -e "s#@TCP@#$CH_TCP_PORT#g" -e "s#@HTTP@#$CH_HTTP_PORT#g" -e "s#@LOG@#$logf#g" \
    "$ROOT/scripts/clickhouse/config.xml" > "$dir/config.xml"
  cp "$ROOT/scripts/clickhouse/users.xml" "$dir/users.xml"
  # The secure native port: the server merges config.d/*.xml beside its
  # config file (18.16 and current alike).
  rm -rf "$dir/config.d"
  if [ -n "${CH_TCP_SECURE_PORT:-}" ]; then
    [ -f "${CH_SSL_CERT:-}" ] && [ -f "${CH_SSL_KEY:-}" ] || die "CH_TCP_SECURE_PORT needs CH_SSL_CERT and CH_SSL_KEY (PEM files)"
    mkdir -p "$dir/config.d"
    cat > "$dir/config.d/tls.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <tcp_port_secure>$CH_TCP_SECURE_PORT</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>$CH_SSL_CERT</certificateFile>
            <privateKeyFile>$CH_SSL_KEY</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
</yandex>
XML
  fi
  log "starting ClickHouse $(clickhouse-server --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1) on 127.0.0.1:$CH_TCP_PORT (log $logf)"
  nohup clickhouse-server --config-file="$dir/config.xml" >>"$logf.stdout" 2>&1 &
  echo $! > "$pidf"
  local i
  for i in $(seq 1 120); do
    pid_alive "$pidf" || { cat "$logf.stdout" >> "$logf" 2>/dev/null; fail_with_log "$logf" "ClickHouse exited during start"; }
    if clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" -q 'SELECT 1' >/dev/null 2>&1 &&
      { [ -z "${CH_TCP_SECURE_PORT:-}" ] || port_open "$CH_TCP_SECURE_PORT"; }; then
      log "ClickHouse answers SELECT 1 on 127.0.0.1:$CH_TCP_PORT"; return 0
    fi
    sleep 0.5
  done
  fail_with_log "$logf" "ClickHouse did not answer within 60 s"
}

# ----------------------------------------------------------------- stop ----
stop_pidfile() { # name pidfile
  local name=$1 pidf=$2
  if ! pid_alive "$pidf"; then rm -f "$pidf"; log "$name not running"; return 0; fi
  local pid; pid=$(cat "$pidf")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  pkill -TERM -P "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidf"; return 0; }
    sleep 0.5
  done
  log "$name did not stop in 30 s: killing"
  pkill -KILL -P "$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

kafka_down() { stop_pidfile Kafka "$RUN_DIR/kafka.pid"; }
clickhouse_down() { stop_pidfile ClickHouse "$RUN_DIR/clickhouse.pid"; }

status() {
  local s
  for s in kafka clickhouse; do
    if pid_alive "$RUN_DIR/$s.pid"; then echo "$s: running (pid $(cat "$RUN_DIR/$s.pid"))"; else echo "$s: stopped"; fi
  done
}

cmd=${1:-}; what=${2:-all}
mkdir -p "$RUN_DIR"
case "$cmd:$what" in
  up:all) apt_install kcat; clickhouse_up; kafka_up ;;
  up:kafka) kafka_up ;;
  up:clickhouse) clickhouse_up ;;
  down:all) kafka_down; clickhouse_down ;;
  down:kafka) kafka_down ;;
  down:clickhouse) clickhouse_down ;;
  status:*) status ;;
  install:*) apt_install kcat; install_clickhouse; install_kafka ;;
  *) echo "usage: $0 up|down|status|install [kafka|clickhouse]" >&2; exit 2 ;;
esac
