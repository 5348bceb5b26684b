#!/usr/bin/env bash
# Whole-command timings of the Compose commands (reconciler issue, "Benchmark"): a 10-service
# busybox stack (db, cache -> api -> worker, web -> proxy: a small depends_on chain, plus ind1..4
# independent; one network, one named volume), images present:
#   - `up -d` (fresh: network, volume, 10 containers), then a second `up -d` (no-op),
#   - `down` of the stack whose services honour SIGTERM promptly (`trap 'exit 0' TERM; while :;
#     do sleep 1 & wait $!; done`) and of the naive stack (`sleep 3600` as PID 1, no handler:
#     the stop rule),
#   - 0 -> 50 replicas (`up -d --scale rep=50` of a one-service stack) and the shims' memory:
#     the sum of VmRSS of the 50 shim processes / 50.
# Medians of RUNS (default 5) runs each, after one warm-up round. Where `docker compose` (v2)
# or `podman-compose` are installed and their engine answers, the same stacks run through them
# in the same script (the image is imported into their store from the same rootfs tarball);
# nothing is installed here (see ../shared/bench/setup-peers.sh).
#
# Root; needs busybox (busybox-static). Environment: RUNS, PEER_RUNS (default RUNS), FLOTILLA_BIN
# (default: target/release/flotilla, built here), KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
RUNS=${RUNS:-5}
PEER_RUNS=${PEER_RUNS:-$RUNS}
REPLICAS=50
[ "$(id -u)" = 0 ] || { echo "up.sh: needs root" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "up.sh: needs busybox (apt-get install -y busybox-static)" >&2; exit 1; }
if [ -z "${FLOTILLA_BIN:-}" ]; then
  cargo build --release --quiet
  FLOTILLA_BIN=$PWD/target/release/flotilla
fi

WORK=$(mktemp -d /tmp/flt-bench-up.XXXXXX)
ROOT=$WORK/root
SOCK=$WORK/run/flotilla.sock
IMG=bench-up/busybox:1
DAEMON_PID=
F=("$FLOTILLA_BIN" --data-root "$ROOT" -H "unix://$SOCK")

cleanup() {
  set +e
  if [ -n "$DAEMON_PID" ]; then
    for d in "$WORK"/up-*/; do
      (cd "$d" && "${F[@]}" down -v -t 0 >/dev/null 2>&1)
    done
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null
  fi
  # Whatever a failed run left: shims and processes by pid, then mounts under the work dir.
  bench_host_cleanup "$ROOT" "$WORK"
  for p in "${PEERS[@]:-}"; do peer_cleanup "$p"; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
PEERS=()
DC=()
peer_cleanup() {
  case $1 in
    docker) for d in "$WORK"/up-*/; do (cd "$d" && "${DC[@]}" down -v -t 0 >/dev/null 2>&1); done ;;
    podman) for d in "$WORK"/up-*/; do (cd "$d" && podman-compose down -v -t 0 >/dev/null 2>&1); done ;;
  esac
  return 0
}
trap cleanup EXIT

# The image: busybox and its applets, the same tarball for every engine.
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/data"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh true echo cat sleep ls httpd wget test; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$WORK/rootfs.tar" .

# The stacks (templates, copied into one directory per round: the directory names the project).
# A service that honours SIGTERM promptly: the shell waits on its child with `wait`, which a
# trapped signal interrupts at once (a foreground `sleep` would first run to its end).
# (`$$` is the stack file's escape of `$`.)
TRAP='trap '"'"'exit 0'"'"' TERM; while :; do sleep 1 & wait $$!; done'
stack() { # variant file
  local v=$1 file=$2 s
  {
    echo "services:"
    for s in db cache api worker web proxy ind1 ind2 ind3 ind4; do
      echo "  $s:"
      echo "    image: $IMG"
      if [ "$v" = trap ]; then
        echo "    command: [\"sh\", \"-c\", \"$TRAP\"]"
      else
        echo "    command: [\"sleep\", \"3600\"]"
      fi
      echo "    networks: [benchnet]"
      case $s in
        db) echo "    volumes: [\"benchdata:/data\"]" ;;
        api) echo "    depends_on: [db, cache]" ;;
        worker | web) echo "    depends_on: [api]" ;;
        proxy) echo "    depends_on: [web]" ;;
      esac
    done
    echo "networks:"
    echo "  benchnet: {}"
    echo "volumes:"
    echo "  benchdata: {}"
  } > "$file"
}
stack trap "$WORK/trap.yaml"
stack naive "$WORK/naive.yaml"
cat > "$WORK/scale.yaml" <<EOF
services:
  rep:
    image: $IMG
    command: ["sh", "-c", "$TRAP"]
EOF

now_ns() { date +%s%N; }
# ms DIR CMD...: runs CMD in DIR (output to $WORK/last.log), prints the wall time in ms. A
# failure is reported and listed in $WORK/failures and the run goes on: `down` can fail on a
# known flotilla bug (see benches/README.md), and one failed container must not end the run.
ms() {
  local dir=$1 t0 t1
  shift
  t0=$(now_ns)
  if ! (cd "$dir" && "$@") > "$WORK/last.log" 2>&1; then
    echo "up.sh: warning: $(basename "$dir"): ${*: -3} failed:" >&2
    grep -v '^ ' "$WORK/last.log" | cut -c1-300 >&2
    echo "$(basename "$dir"): ${*: -3}: $(grep -v '^ ' "$WORK/last.log" | head -1 | cut -c1-200)" >> "$WORK/failures"
  fi
  t1=$(now_ns)
  echo "    $(basename "$dir"): ${*: -3} $(((t1 - t0) / 1000000)) ms" >&2
  echo $(((t1 - t0) / 1000000))
}
settle() { ms "$@" > /dev/null; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
verdict() { # value target-ms
  awk -v v="$1" -v t="$2" 'BEGIN {print (v < t) ? "met" : "MISSED"}'
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# --- one engine: the measurements, `runs` rounds. Arguments: label runs. The engine's commands are
# the arrays UP, DOWN, DOWN_V and SCALE_UP (0->N), run inside the stack's directory, and
# shim_rss_kib PROJECT prints the per-container supervisor memory.
bench_engine() {
  local label=$1 runs=$2 i t
  local up=() noop=() down=() naive=() scale=() rss=()
  echo "== $label (load $(load))"
  : > "$WORK/failures"
  for i in $(seq 0 "$runs"); do
    # Round 0 warms up (page cache, first network, first shim copy) and is not counted. Each
    # round has its own projects: a failed `down` does not spill into the next round.
    local v
    for v in trap naive scale; do
      mkdir -p "$WORK/up-$v-$i"
      cp "$WORK/$v.yaml" "$WORK/up-$v-$i/compose.yaml"
    done
    t=$(ms "$WORK/up-trap-$i" "${UP[@]}")
    [ "$i" = 0 ] || up+=("$t")
    t=$(ms "$WORK/up-trap-$i" "${UP[@]}")
    [ "$i" = 0 ] || noop+=("$t")
    t=$(ms "$WORK/up-trap-$i" "${DOWN[@]}")
    [ "$i" = 0 ] || down+=("$t")
    settle "$WORK/up-trap-$i" "${DOWN_V[@]}"
    settle "$WORK/up-naive-$i" "${UP[@]}"
    t=$(ms "$WORK/up-naive-$i" "${DOWN[@]}")
    [ "$i" = 0 ] || naive+=("$t")
    settle "$WORK/up-naive-$i" "${DOWN_V[@]}"
    t=$(ms "$WORK/up-scale-$i" "${SCALE_UP[@]}")
    [ "$i" = 0 ] || scale+=("$t")
    [ "$i" = 0 ] || rss+=("$(shim_rss_kib "up-scale-$i")")
    settle "$WORK/up-scale-$i" "${DOWN[@]}"
  done
  M_UP=$(echo "${up[*]}" | median)
  M_NOOP=$(echo "${noop[*]}" | median)
  M_DOWN=$(echo "${down[*]}" | median)
  M_NAIVE=$(echo "${naive[*]}" | median)
  M_SCALE=$(echo "${scale[*]}" | median)
  M_RSS=$(echo "${rss[*]}" | median)
  printf '  up -d (10 services)        median %6s ms   runs: %s\n' "$M_UP" "${up[*]}"
  printf '  up -d again (no-op)        median %6s ms   runs: %s\n' "$M_NOOP" "${noop[*]}"
  printf '  down (SIGTERM honoured)    median %6s ms   runs: %s\n' "$M_DOWN" "${down[*]}"
  printf '  down (naive sleep PID 1)   median %6s ms   runs: %s\n' "$M_NAIVE" "${naive[*]}"
  printf '  up -d 0->%d replicas       median %6s ms   runs: %s\n' "$REPLICAS" "$M_SCALE" "${scale[*]}"
  printf '  shim RSS per container     median %6s KiB  runs: %s\n' "$M_RSS" "${rss[*]}"
  echo "  (load after: $(load); failed commands: $(wc -l < "$WORK/failures"))"
  sed 's/^/    failed: /' "$WORK/failures"
}

# --- flotilla
mkdir -p "$WORK/run"
start_daemon() {
  "$FLOTILLA_BIN" daemon --data-root "$ROOT" -H "unix://$SOCK" >> "$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
  [ -S "$SOCK" ] || { echo "up.sh: the daemon did not start" >&2; cat "$WORK/daemon.log" >&2; exit 1; }
}
start_daemon
# Image commands are clients of the daemon: this run's own.
"${F[@]}" image import "$WORK/rootfs.tar" "$IMG" >/dev/null
UP=("${F[@]}" up -d)
DOWN=("${F[@]}" down)
DOWN_V=("${F[@]}" down -v)
SCALE_UP=("${F[@]}" up -d --scale "rep=$REPLICAS")
# Sum of VmRSS of this root's shims (their pids from the state files) / number of shims.
shim_rss_kib() {
  local total=0 n=0 s pid kib
  for s in "$ROOT"/containers/*/state.json; do
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("shim_pid",""))' "$s")
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$kib" ] || continue
    total=$((total + kib)); n=$((n + 1))
  done
  [ "$n" -gt 0 ] && echo $((total / n)) || echo 0
}
echo "flotilla $("$FLOTILLA_BIN" --version 2>/dev/null | head -1), $(nproc) cores, RUNS=$RUNS, $(date -u +%FT%TZ)"
bench_engine flotilla "$RUNS"
F_UP=$M_UP F_NOOP=$M_NOOP F_DOWN=$M_DOWN F_NAIVE=$M_NAIVE F_SCALE=$M_SCALE F_RSS=$M_RSS

# --- peers, where installed and answering
DOCKER=$(command -v /usr/bin/docker || command -v docker || true)
if [ -n "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1; then
  if "$DOCKER" compose version >/dev/null 2>&1; then DC=("$DOCKER" compose)
  elif command -v docker-compose >/dev/null; then DC=(docker-compose); fi
fi
if [ ${#DC[@]} -gt 0 ]; then
  PEERS+=(docker)
  "$DOCKER" import "$WORK/rootfs.tar" "$IMG" >/dev/null
  UP=("${DC[@]}" up -d)
  DOWN=("${DC[@]}" down)
  DOWN_V=("${DC[@]}" down -v)
  SCALE_UP=("${DC[@]}" up -d --scale "rep=$REPLICAS")
  # containerd-shim-runc-v2 processes, per running container of the scale project.
  shim_rss_kib() {
    local total=0 pid n
    n=$("$DOCKER" ps -q --filter "label=com.docker.compose.project=$1" | wc -l)
    for pid in $(pgrep -f containerd-shim || true); do
      total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    [ "$n" -gt 0 ] && echo $((total / n)) || echo 0
  }
  bench_engine "docker compose ($("${DC[@]}" version --short 2>/dev/null || echo '?'))" "$PEER_RUNS"
else
  echo "== docker compose: not installed or no docker engine answering; skipped"
fi
if command -v podman-compose >/dev/null && command -v podman >/dev/null && podman info >/dev/null 2>&1; then
  PEERS+=(podman)
  podman import "$WORK/rootfs.tar" "$IMG" >/dev/null
  UP=(podman-compose up -d)
  DOWN=(podman-compose down)
  DOWN_V=(podman-compose down -v)
  # podman-compose 1.0.6 ignores --scale: N copies through deploy.replicas instead.
  sed -i 's/^  rep:$/  rep:\n    deploy: {replicas: ${REPS:-1}}/' "$WORK/scale.yaml"
  SCALE_UP=(env "REPS=$REPLICAS" podman-compose up -d)
  shim_rss_kib() {
    local total=0 pid n=0
    for pid in $(pgrep -x conmon || true); do
      total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
      n=$((n + 1))
    done
    [ "$n" -gt 0 ] && echo $((total / n)) || echo 0
  }
  bench_engine "podman-compose ($(podman-compose version 2>/dev/null | tail -1))" "$PEER_RUNS"
else
  echo "== podman-compose: not installed or podman not answering; skipped"
fi

echo
echo "flotilla against the issue's targets:"
printf '  up -d %s ms (target <= 200 ms): %s\n' "$F_UP" "$(verdict "$F_UP" 200.001)"
printf '  no-op up %s ms (target < 100 ms): %s\n' "$F_NOOP" "$(verdict "$F_NOOP" 100)"
printf '  down %s ms (target < 100 ms, SIGTERM honoured): %s\n' "$F_DOWN" "$(verdict "$F_DOWN" 100)"
printf '  down %s ms (target < 500 ms, naive): %s\n' "$F_NAIVE" "$(verdict "$F_NAIVE" 500)"
printf '  %d replicas %s ms (target < 1000 ms): %s\n' "$REPLICAS" "$F_SCALE" "$(verdict "$F_SCALE" 1000)"
printf '  shim RSS %s KiB per container\n' "$F_RSS"
