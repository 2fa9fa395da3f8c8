#!/usr/bin/env bash
# Server runs as BENCHMARKS.md takes them, and alternated A/B comparisons of two builds.
#
#   benches/ab.sh seed [BIN_DIR]              seed 100,000 members once, into $AB_DIR/seed
#   benches/ab.sh pgseed [BIN_DIR]            the same into a fresh PostgreSQL database
#   benches/ab.sh run BIN_DIR MODE [ARGS...]  one run: BIN_DIR's server and load tool
#   benches/ab.sh ab BASE_DIR NEW_DIR MODE N  N alternated pairs, each figure, then the means
#
# BIN_DIR holds points-server and points-load (target/release, or a copy of an older
# build). MODE is one of
#   unary   64 clients over 4 channels, closed loop, 10 s          -> ops/s
#   p99     the same at 5,000 requests/s offered                    -> p99 in ms
#   submit  8 clients sending batches of 8,000 redemptions, 10 s    -> ops/s
#   pg1     PostgreSQL, one server, 32 clients over 4 channels      -> ops/s
#   pg2     PostgreSQL, two servers, 32 clients each at once        -> ops/s together
# ARGS go to `points-load run` as they are.
#
# Every run starts its own server(s), on a fresh copy of the seeded data directory for the
# embedded modes, waits until they listen and their CPU use has settled, and stops them on
# exit, also when the script is interrupted. A run whose own server is not listening is
# refused: a server left over from an earlier run would otherwise answer its load and void
# the figure. The ports (AB_PORT, default 20094, and the one above it for a second server)
# lie below Linux's ephemeral range, so a client socket cannot take them.
#
# The PostgreSQL modes use the database AB_PG_DB (default points_ab) at AB_PG_URL (default
# postgres://postgres@127.0.0.1:5432), which `pgseed` drops and creates. It is not copied
# per run, so it grows by every run's entries: alternate builds, never run one build's
# runs all first. Their servers serve metrics (AB_PORT + 100 and up), and each run also
# prints the mean entries per commit that the servers report.
#
# The machine is shared by the server and the load tool, and its figures move by a tenth
# from one run to the next: compare builds only in alternated pairs, several of them.
set -euo pipefail

AB_DIR=${AB_DIR:-/tmp/points-ab}
AB_PORT=${AB_PORT:-20094}
HERE=$(cd "$(dirname "$0")/.." && pwd)

die() {
  echo "ab.sh: $*" >&2
  exit 1
}

AB_PG_URL=${AB_PG_URL:-postgres://postgres@127.0.0.1:5432}
AB_PG_DB=${AB_PG_DB:-points_ab}
SERVER_PIDS=()

# Starts BIN_DIR's server on DATA_DIR (the embedded store) or, with a fourth argument, on
# that database URL (DATA_DIR then only names its log); adds it to SERVER_PIDS. The
# caller's trap stops it.
start_server() {
  local bin=$1 data=$2 port=$3 url=${4:-}
  local store=(--data-dir "$data") metrics=(--no-metrics)
  if [ -n "$url" ]; then
    store=(--database-url "$url")
    metrics=(--metrics-listen "127.0.0.1:$((port + 100))")
  fi
  "$bin/points-server" --listen "127.0.0.1:$port" "${store[@]}" "${metrics[@]}" \
    --log warn --expiry-sweep-secs 0 >"$data.server.log" 2>&1 &
  SERVER_PIDS+=($!)
}

# Whether the server PID itself listens on PORT (not some other process).
own_server_listens() {
  local port=$1 pid=$2
  ss -ltnp 2>/dev/null | grep " 127.0.0.1:$port " | grep -q "pid=$pid,"
}

# Waits up to 60 s until the I-th started server listens on PORT, or fails.
await_server() {
  local port=$1 i=$2
  for _ in $(seq 600); do
    own_server_listens "$port" "${SERVER_PIDS[$i]}" && return 0
    kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

# Waits until every started server has settled: at most AB_SETTLE_TICKS clock ticks
# (default 10, 0.1 s) of CPU in the last second, or 120 s have passed. A server that has
# just started may still be loading a programme or rebuilding its Merkle tree over the
# whole journal (seconds of CPU on a grown PostgreSQL database), which a run would
# otherwise measure instead of the load.
await_settled() {
  local pid busy
  local -A before=()
  for _ in $(seq 120); do
    busy=0
    for pid in "${SERVER_PIDS[@]}"; do
      before[$pid]=$(cpu_ticks "$pid")
    done
    sleep 1
    for pid in "${SERVER_PIDS[@]}"; do
      [ $(($(cpu_ticks "$pid") - before[$pid])) -le "${AB_SETTLE_TICKS:-10}" ] || busy=1
    done
    [ $busy = 0 ] && return 0
  done
  echo "ab.sh: the servers did not settle within 120 s; running anyway" >&2
}

# User and system CPU clock ticks PID has used (0 once it is gone).
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

stop_server() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVER_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PIDS=()
}

# The bootstrap admin key a fresh server printed to LOG.
bootstrap_key() {
  local log=$1 key=
  for _ in $(seq 50); do
    key=$(grep -o 'pk_[A-Za-z0-9_-]*' "$log" 2>/dev/null | head -n1 || true)
    [ -n "$key" ] && break
    sleep 0.2
  done
  [ -n "$key" ] || die "the server printed no bootstrap key (see $log)"
  echo "$key"
}

# Starts BIN's server (on the database URL, if given, else on SEED/data), then seeds
# 100,000 members through it into SEED: the admin key and the load tool's state file.
seed_through() {
  local bin=$1 seed=$2 url=${3:-}
  trap stop_server EXIT
  start_server "$bin" "$seed/data" "$AB_PORT" "$url"
  local key
  key=$(bootstrap_key "$seed/data.server.log")
  await_server "$AB_PORT" 0 || die "the seeding server is not listening on $AB_PORT"
  echo "$key" >"$seed/key"
  "$bin/points-load" seed --addr "127.0.0.1:$AB_PORT" --key "$key" --members 100000 \
    --points 100000 --state "$seed/state.json" --no-progress
}

cmd_seed() {
  local seed=$AB_DIR/seed
  rm -rf "$seed"
  mkdir -p "$seed"
  seed_through "${1:-$HERE/target/release}" "$seed"
}

cmd_pgseed() {
  local seed=$AB_DIR/pgseed
  rm -rf "$seed"
  mkdir -p "$seed"
  psql -q "$AB_PG_URL/postgres" -c "DROP DATABASE IF EXISTS $AB_PG_DB" \
    -c "CREATE DATABASE $AB_PG_DB" || die "cannot create the database $AB_PG_DB"
  seed_through "${1:-$HERE/target/release}" "$seed" "$AB_PG_URL/$AB_PG_DB"
}

# A counter's value in Prometheus TEXT, or 0 if it is not there.
metric() {
  echo "$2" | awk -v m="$1" '$1==m {v=$2} END {printf "%d", v}'
}

# A PostgreSQL run with SERVERS servers (1 or 2), each driven by its own load tool at once.
run_pg() {
  local bin=$1 servers=$2
  shift 2
  local seed=$AB_DIR/pgseed run=$AB_DIR/pgrun
  [ -f "$seed/key" ] || die "no seeded database: run 'ab.sh pgseed' first"
  rm -rf "$run"
  mkdir -p "$run"
  trap stop_server EXIT
  local i port
  for i in $(seq 0 $((servers - 1))); do
    start_server "$bin" "$run/s$i" $((AB_PORT + i)) "$AB_PG_URL/$AB_PG_DB"
  done
  for i in $(seq 0 $((servers - 1))); do
    port=$((AB_PORT + i))
    await_server "$port" "$i" || die "this run's server on $port is not listening (see $run/s$i.server.log)"
  done
  await_settled
  local loads=()
  for i in $(seq 0 $((servers - 1))); do
    cp "$seed/state.json" "$run/state$i.json"
    "$bin/points-load" run --addr "127.0.0.1:$((AB_PORT + i))" --key "$(cat "$seed/key")" \
      --state "$run/state$i.json" --no-verify --concurrency 32 --channels 4 --duration 10s \
      "$@" >"$run/load$i.out" 2>&1 &
    loads+=($!)
  done
  local failed=0
  for i in "${!loads[@]}"; do
    wait "${loads[$i]}" || failed=1
  done
  local total=0 commits=0 entries=0 f
  for i in $(seq 0 $((servers - 1))); do
    cat "$run/load$i.out"
    [ $failed = 0 ] || continue
    f=$(grep -m1 'ops ok' "$run/load$i.out" | grep -o '([0-9]* ops/s)' | tr -dc '0-9' || true)
    [ -n "$f" ] || die "load tool $i printed no figure (see $run/load$i.out)"
    total=$((total + f))
    local metrics
    metrics=$(curl -s "http://127.0.0.1:$((AB_PORT + 100 + i))/metrics" || true)
    commits=$((commits + $(metric points_engine_commits_total "$metrics")))
    entries=$((entries + $(metric points_engine_entries_total "$metrics")))
  done
  stop_server
  [ $failed = 0 ] || die "a load tool failed"
  echo "entries per commit: $(awk -v e=$entries -v c=$commits 'BEGIN {if (c) printf "%.1f", e / c; else print "-"}')"
  echo "together: $total ops ok ($total ops/s)"
}

# One run; prints the load tool's output.
cmd_run() {
  [ $# -ge 2 ] || die "usage: ab.sh run BIN_DIR MODE [ARGS...]"
  local bin=$1 mode=$2
  shift 2
  case $mode in
    pg1) run_pg "$bin" 1 "$@"; return ;;
    pg2) run_pg "$bin" 2 "$@"; return ;;
  esac
  local seed=$AB_DIR/seed
  [ -f "$seed/key" ] || die "no seeded data: run 'ab.sh seed' first"
  local mode_args
  case $mode in
    unary) mode_args=(--concurrency 64 --channels 4 --duration 10s) ;;
    p99) mode_args=(--concurrency 64 --channels 4 --duration 10s --rate 5000/s) ;;
    submit) mode_args=(--concurrency 8 --channels 4 --batch 8000 --duration 10s) ;;
    *) die "unknown mode $mode (unary, p99, submit, pg1 or pg2)" ;;
  esac
  local run=$AB_DIR/run
  rm -rf "$run"
  cp -a "$seed" "$run"
  trap stop_server EXIT
  start_server "$bin" "$run/data" "$AB_PORT"
  await_server "$AB_PORT" 0 || die "this run's server is not listening (see $run/data.server.log)"
  await_settled
  "$bin/points-load" run --addr "127.0.0.1:$AB_PORT" --key "$(cat "$seed/key")" \
    --state "$run/state.json" --no-verify "${mode_args[@]}" "$@"
  stop_server
}

# The run's figure: ops/s, or the p99 in ms for MODE p99.
figure() {
  local mode=$1 out=$2
  if [ "$mode" = p99 ]; then
    grep -m1 '^latency' "$out" | grep -o 'p99 [0-9.]*' | cut -d' ' -f2
  elif [ "$mode" = pg1 ] || [ "$mode" = pg2 ]; then
    grep -m1 '^together' "$out" | grep -o '([0-9]* ops/s)' | tr -dc '0-9'
  else
    grep -m1 'ops ok' "$out" | grep -o '([0-9]* ops/s)' | tr -dc '0-9'
  fi
}

cmd_ab() {
  [ $# -eq 4 ] || die "usage: ab.sh ab BASE_DIR NEW_DIR MODE N"
  local base=$1 new=$2 mode=$3 n=$4
  local out=$AB_DIR/ab.out
  local sums="0 0"
  for i in $(seq "$n"); do
    for side in base new; do
      local bin=$base
      [ $side = new ] && bin=$new
      # A subshell, so that each run's trap stops its own server.
      (bash "$0" run "$bin" "$mode") >"$out" 2>&1 || die "run $i ($side) failed: $(tail -n3 "$out")"
      local f
      f=$(figure "$mode" "$out" || true)
      [ -n "$f" ] || die "run $i ($side) printed no figure: $(tail -n3 "$out")"
      echo "pair $i $side $f"
      sums=$(echo "$sums $side $f" | awk '{b=$1; w=$2; if ($3=="base") b+=$4; else w+=$4; print b, w}')
    done
  done
  echo "$sums $n" | awk '{printf "mean base %.3f, new %.3f (%+.1f %%)\n", $1/$3, $2/$3, ($2-$1)/$1*100}'
}

case ${1:-} in
  seed) shift; cmd_seed "$@" ;;
  pgseed) shift; cmd_pgseed "$@" ;;
  run) shift; cmd_run "$@" ;;
  ab) shift; cmd_ab "$@" ;;
  *) die "usage: ab.sh seed [BIN_DIR] | pgseed [BIN_DIR] | run BIN_DIR MODE [ARGS...] | ab BASE_DIR NEW_DIR MODE N" ;;
esac
