#!/usr/bin/env bash
# A/B of two flotilla binaries on `container run --rm IMG true` (network none, then the default
# bridge network): one daemon per binary (own data root, socket, `[dns] upstreams = []`), and
# the runs alternate A, B, A, B … one by one, so that a shared machine's changing load falls on
# both alike (run.sh's whole-script alternation is at the mercy of the minute). Root; needs
# busybox-static. Usage: benches/run_ab.sh BIN_A BIN_B; RUNS (default 40) timed runs per binary
# and case after 3 warm-ups; NETS (default `none bridge start`: `start` times `container start`
# of a created container alone); KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# = 2 ] || { echo "usage: benches/run_ab.sh BIN_A BIN_B" >&2; exit 2; }
RUNS=${RUNS:-40}
[ "$(id -u)" = 0 ] || { echo "run_ab.sh: needs root" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "run_ab.sh: needs busybox-static" >&2; exit 1; }
BINS=("$1" "$2")
WORK=$(mktemp -d /tmp/flt-bench-ab.XXXXXX)
PIDS=()
f() { local i=$1; shift; "${BINS[$i]}" --data-root "$WORK/root$i" --host "unix://$WORK/s$i.sock" "$@"; }
cleanup() {
  for i in 0 1; do
    [ -n "${PIDS[$i]:-}" ] || continue
    f "$i" container rm --force $(f "$i" container ls -aq 2>/dev/null) >/dev/null 2>&1 || true
    f "$i" network rm bridge >/dev/null 2>&1 || true
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh true; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$WORK/rootfs.tar" .
printf '[dns]\nupstreams = []\n' > "$WORK/daemon.toml"
for i in 0 1; do
  "${BINS[$i]}" daemon --data-root "$WORK/root$i" --host "unix://$WORK/s$i.sock" \
    --config "$WORK/daemon.toml" 2>"$WORK/daemon$i.log" &
  PIDS[i]=$!
  for _ in $(seq 1 500); do [ -S "$WORK/s$i.sock" ] && break; sleep 0.02; done
  [ -S "$WORK/s$i.sock" ] || { echo "run_ab.sh: daemon $i did not start" >&2; exit 1; }
  f "$i" image import "$WORK/rootfs.tar" bench/run:1 >/dev/null
done

# one NET I: one timed run (ms) of binary I. NET `start`: only `container start` of a created
# container (network none) is timed: the daemon's shim start, without create, logs and removal.
one() {
  local net=$1 i=$2 t0 t1 id
  if [ "$net" = start ]; then
    id=$(f "$i" container create --network none bench/run:1 true)
    t0=$EPOCHREALTIME
    f "$i" container start "$id" >/dev/null
    t1=$EPOCHREALTIME
    f "$i" container rm --force "$id" >/dev/null
  else
    t0=$EPOCHREALTIME
    f "$i" container run --rm --network "$net" bench/run:1 true >/dev/null
    t1=$EPOCHREALTIME
  fi
  echo "($t1 - $t0) * 1000" | bc -l
}
stats() {
  sort -n | awk -v name="$1" '{ v[NR] = $1 } END {
    printf "%-58s median %7.2f ms  (min %.2f, p90 %.2f, n=%d)\n", name, v[int((NR + 1) / 2)], v[1], v[int(NR * 0.9 + 0.5)], NR }'
}
echo "container run --rm, A/B alternated run by run, $RUNS runs each (after 3 warm-ups)"
echo "A = ${BINS[0]}"
echo "B = ${BINS[1]}"
for net in ${NETS:-none bridge start}; do
  a=() b=()
  for _ in 1 2 3; do one "$net" 0 >/dev/null; one "$net" 1 >/dev/null; done
  for ((n = 0; n < RUNS; n++)); do
    a+=("$(one "$net" 0)")
    b+=("$(one "$net" 1)")
  done
  label="run --rm --network $net"
  [ "$net" = start ] && label="start (created, network none)"
  printf '%s\n' "${a[@]}" | stats "A $label"
  printf '%s\n' "${b[@]}" | stats "B $label"
done
