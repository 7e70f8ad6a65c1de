#!/usr/bin/env bash
# WAL, RSS and recovery under steady load: `beffroi serve` (the embedded demo's deployment)
# fed QoS 1 readings through a private Mosquitto (persistence on) by `beffroi simulate`.
# Samples the WAL file, the server's RSS and CPU every 5 s, then kills the server with
# SIGKILL and times the restart until /healthz answers ok.
#
#   cargo build --release -p beffroi
#   tools/wal_soak.sh RATE SECONDS        # e.g. tools/wal_soak.sh 1500 60, or 2000 900
#
# Prints one line per sample and a summary; loopback only; everything in a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1500}
SECS=${2:-60}
BIN=${BEFFROI_BIN:-target/release/beffroi}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
work=$(mktemp -d)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mport=$(free_port)
hport=$(free_port)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

{
  [ "$(id -u)" = 0 ] && echo "user root"
  echo "listener $mport 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence true"
  echo "persistence_location $work/"
  echo "max_queued_messages 0"
  echo "max_inflight_messages 1000"
  echo "log_dest none"
} > "$work/mosquitto.conf"
"$MOSQUITTO" -c "$work/mosquitto.conf" & mosq=$!
pids+=($mosq)

cp -r demo "$work/deployment"
mxport=$(free_port)
cat > "$work/beffroi.toml" <<CONF
listen = "127.0.0.1:$hport"
data_dir = "$work/data"
deployment = "$work/deployment"
[http]
metrics_listen = "127.0.0.1:$mxport"
[mqtt]
url = "mqtt://127.0.0.1:$mport"
client_id = "beffroi-soak"
CONF

start_server() {
  BEFFROI_LOG=warn "$BIN" serve --config "$work/beffroi.toml" > "$work/serve.log" 2>&1 &
  server=$!
  pids+=($server)
}
wait_ready() {
  local t0=$1
  until curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null 2>&1; do
    sleep 0.05
    if [ $(( $(date +%s%N) - t0 )) -gt 120000000000 ]; then echo "server not ready" >&2; exit 1; fi
  done
}
# Sum of a metric over its labels.
metric() { curl -s "http://127.0.0.1:$mxport/metrics" | awk -v m="$1" '$1==m || index($1, m"{")==1 {s+=$2} END {printf "%d", s}'; }

start_server
wait_ready "$(date +%s%N)"
"$BIN" simulate --to "mqtt://127.0.0.1:$mport" --load "$RATE" --duration "${SECS}s" > "$work/sim.log" 2>&1 &
sim=$!
pids+=($sim)

wal="$work/data/beffroi.db-wal"
max_wal=0; max_rss=0; first_rss=0; n=0
ticks0=$(awk '{print $14+$15}' "/proc/$server/stat")
mticks0=$(awk '{print $14+$15}' "/proc/$mosq/stat")
t_start=$(date +%s)
printf "%6s %10s %10s %9s %12s\n" "t(s)" "WAL(MiB)" "RSS(MiB)" "frames" "accepted"
while kill -0 "$sim" 2>/dev/null; do
  sleep 5
  n=$((n+1))
  w=$(stat -c %s "$wal" 2>/dev/null || echo 0)
  r=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
  [ "$w" -gt "$max_wal" ] && max_wal=$w
  [ "$r" -gt "$max_rss" ] && max_rss=$r
  [ "$n" = 2 ] && first_rss=$r
  printf "%6d %10.1f %10.1f %9s %12s\n" $(( $(date +%s) - t_start )) "$(echo "$w/1048576" | bc -l)" \
    "$(echo "$r/1024" | bc -l)" "$(metric beffroi_store_wal_frames)" "$(metric beffroi_observations_accepted_total)"
done
elapsed=$(( $(date +%s) - t_start ))
ticks1=$(awk '{print $14+$15}' "/proc/$server/stat")
mticks1=$(awk '{print $14+$15}' "/proc/$mosq/stat")
hz=$(getconf CLK_TCK)
sent=$(grep -o 'sent [0-9]*' "$work/sim.log" | awk '{print $2}')
sleep 3
stored=$(sqlite3 "$work/data/beffroi.db" "SELECT value FROM counters WHERE name = 'observations'")
echo "---"
echo "rate ${RATE} msg/s for ${SECS} s: sent ${sent:-?}, observations in the store ${stored}"
echo "WAL: largest $(echo "$max_wal/1048576" | bc -l | xargs printf %.1f) MiB, now $(echo "$(stat -c %s "$wal" 2>/dev/null || echo 0)/1048576" | bc -l | xargs printf %.1f) MiB"
echo "RSS: after 10 s $(echo "$first_rss/1024" | bc -l | xargs printf %.0f) MiB, largest $(echo "$max_rss/1024" | bc -l | xargs printf %.0f) MiB"
cpu=$(echo "($ticks1-$ticks0)/$hz/$elapsed" | bc -l)
mcpu=$(echo "($mticks1-$mticks0)/$hz/$elapsed" | bc -l)
echo "CPU of beffroi serve: $(echo "$cpu*100" | bc -l | xargs printf %.0f) % of a core, $(echo "$cpu/$RATE*1000000" | bc -l | xargs printf %.0f) µs per message"
echo "CPU of mosquitto (same run): $(echo "$mcpu*100" | bc -l | xargs printf %.0f) % of a core, $(echo "$mcpu/$RATE*1000000" | bc -l | xargs printf %.0f) µs per message; ratio beffroi/mosquitto $(echo "$cpu/$mcpu" | bc -l | xargs printf %.1f)"
curl -s "http://127.0.0.1:$mxport/metrics" | grep -E '^beffroi_store_wal_checkpoint_seconds_(sum|count)' || true
curl -s "http://127.0.0.1:$mxport/metrics" | grep -E '^beffroi_(store_wal_(checkpoints|restarts|last)|observations_(accepted|duplicate|late)_total|mqtt_(messages|acks|redelivered)_total)' || true
curl -s "http://127.0.0.1:$mxport/metrics" | grep -E '^beffroi_observations_rejected_total' | awk '$2 > 0' || true

# Recovery after kill -9, under a backlog: keep publishing while the server is down.
"$BIN" simulate --to "mqtt://127.0.0.1:$mport" --load "$RATE" --duration 10s > "$work/sim2.log" 2>&1 &
pids+=($!)
sleep 5
kill -9 "$server"
wait "$server" 2>/dev/null || true
w=$(stat -c %s "$wal" 2>/dev/null || echo 0)
t0=$(date +%s%N)
start_server
wait_ready "$t0"
echo "restart after kill -9 with a $(echo "$w/1048576" | bc -l | xargs printf %.1f) MiB WAL: healthz ok after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
