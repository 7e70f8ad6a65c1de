#!/usr/bin/env bash
# A real full disk: `beffroi serve` with its data folder on a 40 MB tmpfs, fed 1,500 msg/s at
# QoS 1 through a private Mosquitto until the disk is full; 75 s in, the tmpfs grows (space
# returns). Prints /healthz and the store's counters every 3 s, then the totals, the log lines
# at WARN and above, and whether any incident change was logged twice.
#
#   cargo build --release -p beffroi
#   sudo tools/disk_full.sh            # needs root: it mounts a tmpfs on /mnt/beffroi-disk-full
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BEFFROI_BIN:-target/release/beffroi}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
work=$(mktemp -d)
mnt=/mnt/beffroi-disk-full
mkdir -p $mnt
umount $mnt 2>/dev/null; mount -t tmpfs -o size=40m tmpfs $mnt
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mport=$(free_port); hport=$(free_port); mxport=$(free_port)
printf "user root\nlistener $mport 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location $work/\nmax_queued_messages 0\nmax_inflight_messages 1000\nlog_dest none\n" > $work/m.conf
"$MOSQUITTO" -c $work/m.conf & mosq=$!
cp -r demo $work/dep
printf "listen = \"127.0.0.1:$hport\"\ndata_dir = \"$mnt/data\"\ndeployment = \"$work/dep\"\n[privacy]\nkeys_dir = \"$work/keys\"\n[http]\nmetrics_listen = \"127.0.0.1:$mxport\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:$mport\"\nclient_id = \"bf-full\"\n" > $work/b.toml
BEFFROI_LOG=info "$BIN" serve --config $work/b.toml > $work/serve.log 2>&1 & srv=$!
until curl -sf http://127.0.0.1:$hport/healthz >/dev/null; do sleep 0.2; done
"$BIN" simulate --to mqtt://127.0.0.1:$mport --load 1500 --duration 150s > $work/sim.log 2>&1 & sim=$!
m() { curl -s http://127.0.0.1:$mxport/metrics | awk -v k="$1" '$1==k {print $2}'; }
for i in $(seq 1 40); do
  sleep 3
  h=$(curl -s http://127.0.0.1:$hport/healthz)
  echo "t=$((i*3)) healthz=$h writable=$(m beffroi_store_writable) errors=$(m beffroi_store_errors_total) recoveries=$(m beffroi_store_recoveries_total) acks=$(m beffroi_mqtt_acks_total) msgs=$(m beffroi_mqtt_messages_total) df=$(df --output=used $mnt | tail -1)"
  if [ $i = 25 ]; then mount -o remount,size=400m $mnt; echo "--- space returns"; fi
done
wait $sim; sleep 15
echo "sent: $(cat $work/sim.log)"
echo "acks=$(m beffroi_mqtt_acks_total) msgs=$(m beffroi_mqtt_messages_total) redelivered=$(m beffroi_mqtt_redelivered_total) refused=$(m beffroi_store_refused_envelopes_total) dup=$(m beffroi_observations_duplicate_total) late=$(m beffroi_observations_late_total)"
echo "--- log lines at WARN and above: $(grep -cE "ERROR|WARN" $work/serve.log)"
sed 's/\x1b\[[0-9;]*m//g' $work/serve.log | grep -E "ERROR|WARN" | cut -c1-200
sqlite3 $mnt/data/beffroi.db "SELECT count(*) FROM (SELECT incident_id FROM incident_log GROUP BY incident_id, at, action, detail HAVING count(*) > 1)" | sed 's/^/log entries written twice: /'
kill $srv $mosq; wait $srv $mosq 2>/dev/null; umount $mnt; rm -rf $work
