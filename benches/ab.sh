#!/usr/bin/env bash
# Server runs as BENCHMARKS.md takes them, and alternated A/B comparisons of two builds.
#
#   benches/ab.sh seed [BIN_DIR]              seed 100,000 members once, into $AB_DIR/seed
#   benches/ab.sh run BIN_DIR MODE [ARGS...]  one run: BIN_DIR's server and load tool
#   benches/ab.sh ab BASE_DIR NEW_DIR MODE N  N alternated pairs, each figure, then the means
#
# BIN_DIR holds points-server and points-load (target/release, or a copy of an older
# build). MODE is one of
#   unary   64 clients over 4 channels, closed loop, 10 s          -> ops/s
#   p99     the same at 5,000 requests/s offered                    -> p99 in ms
#   submit  8 clients sending batches of 8,000 redemptions, 10 s    -> ops/s
# ARGS go to `points-load run` as they are.
#
# Every run starts its own server on a fresh copy of the seeded data directory, gives it
# 1.5 s, and stops it on exit, also when the script is interrupted. A run whose own server
# is not listening is refused: a server left over from an earlier run would otherwise
# answer its load and void the figure. The port (AB_PORT, default 20094) lies below
# Linux's ephemeral range, so a client socket cannot take it.
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

# Starts BIN_DIR's server on DATA_DIR; sets SERVER_PID. The caller's trap stops it.
start_server() {
  local bin=$1 data=$2 port=$3
  "$bin/points-server" --listen "127.0.0.1:$port" --data-dir "$data" --no-metrics \
    --log warn --expiry-sweep-secs 0 >"$data.server.log" 2>&1 &
  SERVER_PID=$!
}

# Whether SERVER_PID itself listens on the port (not some other process).
own_server_listens() {
  local port=$1
  ss -ltnp 2>/dev/null | grep " 127.0.0.1:$port " | grep -q "pid=$SERVER_PID,"
}

stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}

cmd_seed() {
  local bin=${1:-$HERE/target/release}
  local seed=$AB_DIR/seed
  rm -rf "$seed"
  mkdir -p "$seed"
  trap stop_server EXIT
  start_server "$bin" "$seed/data" "$AB_PORT"
  local key=
  for _ in $(seq 50); do
    key=$(grep -o 'pk_[A-Za-z0-9_-]*' "$seed/data.server.log" 2>/dev/null | head -n1 || true)
    [ -n "$key" ] && break
    sleep 0.2
  done
  [ -n "$key" ] || die "the server printed no bootstrap key (see $seed/data.server.log)"
  sleep 1
  own_server_listens "$AB_PORT" || die "the seeding server is not listening on $AB_PORT"
  echo "$key" >"$seed/key"
  "$bin/points-load" seed --addr "127.0.0.1:$AB_PORT" --key "$key" --members 100000 \
    --points 100000 --state "$seed/state.json" --no-progress
}

# One run; prints the load tool's output.
cmd_run() {
  [ $# -ge 2 ] || die "usage: ab.sh run BIN_DIR MODE [ARGS...]"
  local bin=$1 mode=$2
  shift 2
  local seed=$AB_DIR/seed
  [ -f "$seed/key" ] || die "no seeded data: run 'ab.sh seed' first"
  local mode_args
  case $mode in
    unary) mode_args=(--concurrency 64 --channels 4 --duration 10s) ;;
    p99) mode_args=(--concurrency 64 --channels 4 --duration 10s --rate 5000/s) ;;
    submit) mode_args=(--concurrency 8 --channels 4 --batch 8000 --duration 10s) ;;
    *) die "unknown mode $mode (unary, p99 or submit)" ;;
  esac
  local run=$AB_DIR/run
  rm -rf "$run"
  cp -a "$seed" "$run"
  trap stop_server EXIT
  start_server "$bin" "$run/data" "$AB_PORT"
  sleep 1.5
  own_server_listens "$AB_PORT" || die "this run's server is not listening (see $run/data.server.log)"
  "$bin/points-load" run --addr "127.0.0.1:$AB_PORT" --key "$(cat "$seed/key")" \
    --state "$run/state.json" --no-verify "${mode_args[@]}" "$@"
  stop_server
}

# The run's figure: ops/s, or the p99 in ms for MODE p99.
figure() {
  local mode=$1 out=$2
  if [ "$mode" = p99 ]; then
    grep -m1 '^latency' "$out" | grep -o 'p99 [0-9.]*' | cut -d' ' -f2
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
  run) shift; cmd_run "$@" ;;
  ab) shift; cmd_ab "$@" ;;
  *) die "usage: ab.sh seed [BIN_DIR] | run BIN_DIR MODE [ARGS...] | ab BASE_DIR NEW_DIR MODE N" ;;
esac
