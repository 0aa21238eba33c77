#!/usr/bin/env bash
# HTTP load figure for docs/BENCHMARKS.md: requests/s and p50/p99 latency for GET and for sync
# PUT with 64 concurrent connections (wrk, 2 threads), against `amberdb serve` and, in the same
# run on the same machine, against a trivial axum handler on the same stack
# (examples/trivial_http.rs). The ratio amberdb/trivial is the server's overhead.
#
# Usage: crates/amberdb-server/bench/http_load.sh [DURATION]   (default 10s per measurement)
# Needs: wrk (apt-get install wrk). Data goes to a temp dir under $TMPDIR (its file system
# decides what an fsync costs; say which in the write-up).
set -euo pipefail
cd "$(dirname "$0")/../../.."
DURATION=${1:-10s}
CONNS=64
THREADS=2
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet -p amberdb-cli
cargo build --release --quiet -p amberdb-server --example trivial_http

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

start() { # name, command... ; sets URL
  local name=$1; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    URL=$(grep -o 'http://[0-9.:]*' "$TMP/$name.out" || true)
    [ -n "$URL" ] && return 0
    sleep 0.1
  done
  echo "$name did not start" >&2; cat "$TMP/$name.log" >&2; exit 1
}

cat >"$TMP/put.lua" <<'LUA'
-- Every request writes a new key (t<thread>-<n>), so the engine does real inserts.
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
local n = 0
function request()
  n = n + 1
  return wrk.format("PUT", PATH_PREFIX .. "t" .. tid .. "-" .. n,
    {["Content-Type"] = "application/json", ["Amber-Durability"] = "sync"},
    '{"hp":20,"inventory":[1,2,3],"name":"player"}')
end
LUA

measure() { # label, script-or-empty, path-prefix, url
  local label=$1 script=$2 prefix=$3 url=$4 out
  if [ -n "$script" ]; then
    sed "s#PATH_PREFIX#\"$prefix\"#" "$TMP/put.lua" >"$TMP/run.lua"
    out=$(wrk -t$THREADS -c$CONNS -d"$DURATION" --latency -s "$TMP/run.lua" "$url")
  else
    out=$(wrk -t$THREADS -c$CONNS -d"$DURATION" --latency "$url$prefix")
  fi
  echo "$out" >"$TMP/$label.wrk"
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$label: errors during the run:" >&2; echo "$out" >&2; exit 1
  fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$label $rps $p50 $p99"
}

start amberdb ${CARGO_TARGET_DIR:-./target}/release/amberdb serve --listen 127.0.0.1:0 --data "$TMP/data"
AMBER=$URL
start trivial ${CARGO_TARGET_DIR:-./target}/release/examples/trivial_http 127.0.0.1:0
TRIVIAL=$URL
curl -fsS -X PUT "$AMBER/v1/collections/bench/docs/hot" -H 'content-type: application/json' \
  -d '{"hp":20,"inventory":[1,2,3],"name":"player"}' >/dev/null

{
  measure amber_get "" /v1/collections/bench/docs/hot "$AMBER"
  measure trivial_get "" /get "$TRIVIAL"
  measure amber_put put /v1/collections/bench/docs/ "$AMBER"
  measure trivial_put put /put/ "$TRIVIAL"
} >"$TMP/results"

STATUS=$(curl -fsS "$AMBER/v1/admin/status")
python3 - "$TMP/results" "$STATUS" "$DURATION" <<'PY'
import json, sys
rows = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1]) if l.strip()}
status = json.loads(sys.argv[2])
def ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit) and (unit != "s" or not v.endswith(("us", "ms"))):
            return float(v[: -len(unit)]) * f
    return float(v)
print(f"wrk -t2 -c64 -d{sys.argv[3]} --latency; sync PUTs write a new key each")
print()
print("| workload | server | requests/s | p50 | p99 | amberdb / trivial (req/s) |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for op, label in (("get", "GET one document"), ("put", "PUT, sync durability")):
    a, t = rows[f"amber_{op}"], rows[f"trivial_{op}"]
    ratio = float(a[0]) / float(t[0])
    print(f"| {label} | amberdb | {float(a[0]):,.0f} | {ms(a[1]):.2f} ms | {ms(a[2]):.2f} ms | {ratio:.2f} |")
    print(f"| {label} | trivial axum | {float(t[0]):,.0f} | {ms(t[1]):.2f} ms | {ms(t[2]):.2f} ms | |")
print()
print(f"engine during the run: {status['commits']} commits, {status['fsyncs']} fsyncs, "
      f"{status['commits_per_fsync']:.1f} commits per fsync (group commit)")
PY
