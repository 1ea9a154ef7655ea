# Starting the services Keel scales out on, when they do not answer on their usual local ports.
# Sourced by .ci/run and deploy/local-cluster. Each `ensure_*` returns at once when the service
# answers; else it starts the machine's own (Debian's packages), waits up to 30 s, and fails
# loudly if it still does not answer. It prints "started <name>" when it started something, so a
# caller can stop exactly what it started.

pg_answers() { pg_isready -q -h 127.0.0.1 -p 5432; }
nats_answers() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
redis_answers() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }

# wait_for NAME CHECK: up to 30 s for CHECK to succeed.
wait_for() {
  local name=$1 check=$2
  for _ in $(seq 30); do
    "$check" && return 0
    sleep 1
  done
  echo "error: $name did not come up within 30 s" >&2
  return 1
}

ensure_postgres() {
  pg_answers && return 0
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  wait_for "PostgreSQL on 127.0.0.1:5432" pg_answers && echo "started postgres"
}

ensure_nats() {
  nats_answers && return 0
  echo "NATS is not answering on 127.0.0.1:4222; starting it with JetStream" >&2
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile /run/keel-nats.pid --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  wait_for "NATS on 127.0.0.1:4222" nats_answers && echo "started nats"
}

ensure_redis() {
  redis_answers && return 0
  echo "Redis is not answering on 127.0.0.1:6379; starting it" >&2
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/keel.log --pidfile /run/keel-redis.pid || true
  wait_for "Redis on 127.0.0.1:6379" redis_answers && echo "started redis"
}

# Stops a service ensure_* started (by the pid it recorded).
stop_started() {
  case $1 in
    postgres) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main stop || true ;;
    nats) [[ -f /run/keel-nats.pid ]] && kill "$(cat /run/keel-nats.pid)" 2>/dev/null; rm -f /run/keel-nats.pid ;;
    redis) [[ -f /run/keel-redis.pid ]] && kill "$(cat /run/keel-redis.pid)" 2>/dev/null; rm -f /run/keel-redis.pid ;;
  esac
}
