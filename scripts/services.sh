#!/usr/bin/env bash
# Install what is missing and start what is down of the services `make test`, `make stack` and
# `make bench` use, then create what SentinAI needs in them. Idempotent and quick when everything is
# already there (no package manager, no Maven, no restart).
#
#   PostgreSQL 15   127.0.0.1:5432  Debian package; `trust` for local connections, superuser postgres,
#                                   roles sentinai (owner) + sentinai_app (RLS-bound) + sentinai_platform
#                                   (RLS-bound, the only one that may cross tenants), database sentinai
#   RabbitMQ        127.0.0.1:5672  Debian package; guest/guest, management plugin on 127.0.0.1:15672
#   Redis           127.0.0.1:6379  Debian package; no persistence
#   Apache Kafka 4  127.0.0.1:9092  Maven Central's org.apache.kafka:kafka_2.13 (version: scripts/kafka/pom.xml),
#                                   single node, KRaft combined mode (controller on 127.0.0.1:9093)
#                   127.0.0.1:9094  the same broker over SASL_SSL (TLS with a throwaway CA in var/services/kafka/tls,
#                                   SCRAM-SHA-512 user sentinai), to test the managed-Kafka path
#
# DEVELOPMENT AND TEST ONLY: PostgreSQL trusts every local connection and RabbitMQ keeps guest/guest.
# Never run this on a host that serves real data; point the project at real services instead
# (README, "Using services you already run").
#
# A service whose URL in the environment (DATABASE_URL, CELERY_BROKER_URL, REDIS_URL,
# KAFKA_BOOTSTRAP_SERVERS) names another host or port is yours: this script leaves it alone. So does
# SENTINAI_SKIP_SERVICES=kafka,redis (comma-separated names).
#
# State and logs live under var/services/ (SENTINAI_SERVICES_DIR); each service this script starts
# leaves a pid file in its run/ folder, and `make services-stop` stops those. The Kafka jars are cached
# in .cache/ (SENTINAI_CACHE_DIR). Both are ignored by git.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/apt.sh
VAR_DIR=$(realpath -m "${SENTINAI_SERVICES_DIR:-var/services}")
RUN_DIR=$VAR_DIR/run
CACHE_DIR=$(realpath -m "${SENTINAI_CACHE_DIR:-.cache}")
PG_VERSION=15
WAIT_SECONDS=${SENTINAI_SERVICE_WAIT_SECONDS:-90}
mkdir -p "$RUN_DIR"

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
skipped() { [[ ",${SENTINAI_SKIP_SERVICES:-}," == *",$1,"* ]]; }

# elsewhere VALUE PORT: VALUE (a URL, or host:port[,...]) names a host other than this one's loopback,
# or another port than PORT.
elsewhere() {
  python3 - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit

value, port = sys.argv[1], int(sys.argv[2])
url = urlsplit(value if "://" in value else "//" + value.split(",")[0])
local = url.hostname in ("127.0.0.1", "localhost", "::1") and (url.port or port) == port
sys.exit(1 if local else 0)
PY
}

# wait_for NAME COMMAND...: run COMMAND until it succeeds, at most WAIT_SECONDS.
wait_for() {
  local name=$1; shift
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$name did not become ready within ${WAIT_SECONDS}s (last check: $*)"
    sleep 0.5
  done
}

# --- install what is missing (Debian packages) -------------------------------------------------
missing=()
[ -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ] || missing+=(postgresql-$PG_VERSION postgresql-contrib)
command -v psql >/dev/null || missing+=(postgresql-client-$PG_VERSION)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# apt_install (scripts/lib/apt.sh): `apt-get update` once, then `apt-get install` of what is missing.
apt_install services "${missing[@]}"

# --- PostgreSQL ----------------------------------------------------------------------------------
pg_start() {
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
    log "creating the PostgreSQL $PG_VERSION cluster 'main'"
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  local conf=/etc/postgresql/$PG_VERSION/main hba
  hba=$conf/pg_hba.conf
  # Development and test only: every local connection is trusted (no passwords to hand around).
  if ! grep -q '^# sentinai: trust local' "$hba"; then
    log "PostgreSQL: trusting local connections (development and test only)"
    { printf '# sentinai: trust local connections (scripts/services.sh; development and test only)\n'
      printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
      cat "$hba"; } > "$hba.new" && mv "$hba.new" "$hba"
    chown postgres:postgres "$hba"
    pg_isready -q -h 127.0.0.1 -p 5432 && pg_ctlcluster "$PG_VERSION" main reload
  fi
  if [ ! -f "$conf/conf.d/sentinai.conf" ]; then
    printf "listen_addresses = '127.0.0.1'\nport = 5432\n" > "$conf/conf.d/sentinai.conf"
    chown postgres:postgres "$conf/conf.d/sentinai.conf"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL $PG_VERSION"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
    wait_for "PostgreSQL (127.0.0.1:5432)" pg_isready -q -h 127.0.0.1 -p 5432
    head -1 "/var/lib/postgresql/$PG_VERSION/main/postmaster.pid" > "$RUN_DIR/postgresql.pid"
  fi
  psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
  # The schema owner (runs migrations) and the application role (bound by row-level security).
  psql_admin "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sentinai') THEN
      CREATE ROLE sentinai LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sentinai_app') THEN
      CREATE ROLE sentinai_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sentinai_platform') THEN
      CREATE ROLE sentinai_platform LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB; END IF;
    -- The owner runs migrations, whose data steps may need every tenant's rows.
    IF NOT pg_has_role('sentinai', 'sentinai_platform', 'MEMBER') THEN GRANT sentinai_platform TO sentinai; END IF;
  END \$\$;"
  if [ -z "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'sentinai'")" ]; then
    log "creating database sentinai"
    psql_admin "CREATE DATABASE sentinai OWNER sentinai"
  fi
}

# --- RabbitMQ ------------------------------------------------------------------------------------
rabbit_start() {
  # Loopback only; the node is rabbit@localhost so the CLI tools never depend on the host's name.
  if [ ! -f /etc/rabbitmq/conf.d/10-sentinai.conf ]; then
    mkdir -p /etc/rabbitmq/conf.d
    printf 'listeners.tcp.default = 127.0.0.1:5672\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = 15672\n' \
      > /etc/rabbitmq/conf.d/10-sentinai.conf
  fi
  if ! grep -q '^# sentinai' /etc/rabbitmq/rabbitmq-env.conf 2>/dev/null; then
    { printf '# sentinai: the node, its epmd and its distribution port on loopback (scripts/services.sh)\n'
      printf 'NODENAME=rabbit@localhost\nNODE_IP_ADDRESS=127.0.0.1\nexport ERL_EPMD_ADDRESS=127.0.0.1\n'
      printf 'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
    } >> /etc/rabbitmq/rabbitmq-env.conf
  fi
  if [ ! -f /etc/rabbitmq/enabled_plugins ] || ! grep -q rabbitmq_management /etc/rabbitmq/enabled_plugins; then
    echo '[rabbitmq_management].' > /etc/rabbitmq/enabled_plugins
  fi
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
    wait_for "RabbitMQ (rabbit@localhost)" rabbitmqctl -q await_startup --timeout 5
    rabbitmqctl -q eval 'list_to_integer(os:getpid()).' > "$RUN_DIR/rabbitmq.pid"
  fi
  wait_for "RabbitMQ (127.0.0.1:5672)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672'
  for vhost in sentinai_test; do
    rabbitmqctl -q list_vhosts | grep -qx "$vhost" || rabbitmqctl -q add_vhost "$vhost" >/dev/null
    rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
  done
}

# --- Redis ---------------------------------------------------------------------------------------
redis_start() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis (no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir "$VAR_DIR" --pidfile "$RUN_DIR/redis.pid" --logfile "$VAR_DIR/redis.log"
    wait_for "Redis (127.0.0.1:6379)" redis-cli -h 127.0.0.1 -p 6379 ping
  fi
}

# --- Apache Kafka --------------------------------------------------------------------------------
# Development and test credentials of the SASL_SSL listener (never a real cluster's).
KAFKA_TLS_PASSWORD=sentinai-dev-only
KAFKA_SCRAM_USER=sentinai
KAFKA_SCRAM_PASSWORD=sentinai-dev-only

# kafka_tls DIR: a throwaway CA (ca.pem, what clients trust) and the broker's certificate for
# 127.0.0.1/localhost signed by it, as the PKCS12 keystore the broker reads. Made once.
kafka_tls() {
  local dir=$1
  [ -f "$dir/broker.p12" ] && return
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sentinai-dev-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$dir/san.ext"
  openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 3650 \
    -extfile "$dir/san.ext" -out "$dir/broker.pem" 2>/dev/null
  openssl pkcs12 -export -in "$dir/broker.pem" -inkey "$dir/broker.key" -certfile "$dir/ca.pem" \
    -name broker -out "$dir/broker.p12" -passout "pass:$KAFKA_TLS_PASSWORD"
}

kafka_start() {
  local version home data logs props
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
  home=$CACHE_DIR/kafka-$version
  data=$VAR_DIR/kafka/data
  logs=$VAR_DIR/kafka
  props=$logs/server.properties
  if python3 scripts/kafka_probe.py 127.0.0.1:9092 --timeout 1 >/dev/null 2>&1; then
    if bash -c 'exec 3<>/dev/tcp/127.0.0.1/9094' 2>/dev/null; then
      return
    fi
    # Up, but started before it had the SASL_SSL listener: restart it if it is ours.
    [ -f "$RUN_DIR/kafka.pid" ] && kill -0 "$(cat "$RUN_DIR/kafka.pid")" 2>/dev/null \
      || die "Kafka answers on 9092 but has no SASL_SSL listener on 9094 (not started by this script: restart it)"
    log "restarting Kafka to add its SASL_SSL listener"
    kill "$(cat "$RUN_DIR/kafka.pid")"
    wait_for "Kafka to stop" bash -c "! kill -0 $(cat "$RUN_DIR/kafka.pid") 2>/dev/null"
  fi
  if [ ! -f "$home/.complete" ]; then
    log "resolving Apache Kafka $version from Maven Central into $home"
    rm -rf "$home"
    mkdir -p "$logs"
    mvn -q -B -Dstyle.color=never -f scripts/kafka/pom.xml dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$home/lib" >> "$logs/maven.log" 2>&1 \
      || die "Maven could not resolve org.apache.kafka:kafka_2.13:$version (see $logs/maven.log)"
    touch "$home/.complete"
  fi
  mkdir -p "$data"
  kafka_tls "$logs/tls"
  cat > "$props" <<PROPS
# Written by scripts/services.sh: one node, KRaft combined mode, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
# PLAINTEXT for the platform and tests; SASL_SSL (TLS + SCRAM-SHA-512, as on AWS MSK) to test that path.
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094
advertised.listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$logs/tls/broker.p12
ssl.keystore.password=$KAFKA_TLS_PASSWORD
log.dirs=$data
num.partitions=${KAFKA_NUM_PARTITIONS:-6}
# Topics are created explicitly (the relay creates a tenant topic on first use with the configured
# partitions), as on managed clusters that forbid auto-creation.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
PROPS
  local cp="$home/lib/*"
  if [ ! -f "$data/meta.properties" ]; then
    log "formatting Kafka storage in $data"
    local cluster_id
    # Base64 of a random UUID, never starting with '-' (as Kafka's own Uuid.randomUuid ensures): one
    # in 64 does, and the tool's parser then reads it as an option ("--cluster-id: expected one argument").
    cluster_id=$(python3 -c '
import base64, uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
    pass
print(cid)')
    java -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$props" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]" >> "$logs/storage.log" 2>&1 \
      || die "Kafka storage format failed: see $logs/storage.log"
  fi
  log "starting Apache Kafka $version (logs: $logs/server.log)"
  # slf4j-simple (scripts/kafka/pom.xml) is the SLF4J binding; it writes to stderr, kept in server.log.
  setsid nohup java -Xms256m -Xmx${KAFKA_HEAP:-1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd'T'HH:mm:ss.SSSZ" \
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka=info -Dorg.slf4j.simpleLogger.log.kafka=info \
    -cp "$cp" kafka.Kafka "$props" >> "$logs/server.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/kafka.pid"
  wait_for "Kafka (127.0.0.1:9092; see $logs/server.log)" python3 scripts/kafka_probe.py 127.0.0.1:9092 --timeout 1
  wait_for "Kafka's SASL_SSL listener (127.0.0.1:9094)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9094'
}

declare -A url_of=([postgresql]="${DATABASE_URL:-}" [rabbitmq]="${CELERY_BROKER_URL:-}"
  [redis]="${REDIS_URL:-}" [kafka]="${KAFKA_BOOTSTRAP_SERVERS:-}")
declare -A port_of=([postgresql]=5432 [rabbitmq]=5672 [redis]=6379 [kafka]=9092)
for service in postgresql rabbitmq redis kafka; do
  skipped "$service" && { log "leaving $service alone (SENTINAI_SKIP_SERVICES)"; continue; }
  if [ -n "${url_of[$service]}" ] && elsewhere "${url_of[$service]}" "${port_of[$service]}"; then
    log "leaving $service alone: the environment points at another one"
    continue
  fi
  case $service in
    postgresql) pg_start ;;
    rabbitmq) rabbit_start ;;
    redis) redis_start ;;
    kafka) kafka_start ;;
  esac
done
log "services ready (${SECONDS}s)"
