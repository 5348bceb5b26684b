#!/usr/bin/env bash
# Watch benchmarks (watch issue, "Benchmark"): edit -> new content served over HTTP by a busybox
# httpd service published on a loopback port, while `flotilla watch` runs:
#   - `sync`: ./www -> /www, the edited index.html served as is (no restart),
#   - `sync+restart`: the same edit, the replicas restarted,
#   - stack-file edit: an environment variable of the service changed in compose.yaml; the
#     container is recreated and writes the value into the page it serves,
# each the median (and min, p90) of EDITS (default 10) edits, after one warm-up edit. Then the
# watcher's idle CPU on a TREE (default 50000) file tree: startup time (initial hashing), CPU
# seconds used over IDLE (default 10) seconds of nothing changing, its RSS.
#
# Root; needs busybox (busybox-static) and python3. Environment: EDITS, TREE, IDLE, FLOTILLA_BIN
# (default: target/release/flotilla, built here), KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
EDITS=${EDITS:-10}
TREE=${TREE:-50000}
IDLE=${IDLE:-10}
[ "$(id -u)" = 0 ] || { echo "watch.sh: needs root" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "watch.sh: needs busybox (apt-get install -y busybox-static)" >&2; exit 1; }
if [ -z "${FLOTILLA_BIN:-}" ]; then
  cargo build --release --quiet
  FLOTILLA_BIN=$PWD/target/release/flotilla
fi

WORK=$(mktemp -d /tmp/flt-bench-watch.XXXXXX)
ROOT=$WORK/root
SOCK=$WORK/run/flotilla.sock
IMG=bench-watch/busybox:1
DAEMON_PID=
WATCHERS=()
F=("$FLOTILLA_BIN" --data-root "$ROOT" -H "unix://$SOCK")

cleanup() {
  set +e
  for pid in "${WATCHERS[@]:-}"; do [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; done
  if [ -n "$DAEMON_PID" ]; then
    for d in "$WORK"/p-*/; do
      [ -d "$d" ] && (cd "$d" && "${F[@]}" down -v -t 0 >/dev/null 2>&1)
    done
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null
  fi
  bench_host_cleanup "$ROOT" "$WORK"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/www"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh true echo cat sleep ls httpd; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$WORK/rootfs.tar" .

mkdir -p "$WORK/run"
printf '[dns]\nupstreams = []\n' > "$WORK/daemon.toml"
"$FLOTILLA_BIN" daemon --data-root "$ROOT" -H "unix://$SOCK" --config "$WORK/daemon.toml" >> "$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "watch.sh: the daemon did not start" >&2; cat "$WORK/daemon.log" >&2; exit 1; }
# Image commands are clients of the daemon: this run's own.
"$FLOTILLA_BIN" -H "unix://$SOCK" image import "$WORK/rootfs.tar" "$IMG" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# stack DIR ACTION PORT VALUE: a one-service httpd stack syncing ./www with ACTION (to /www, what
# httpd serves; for sync+restart to /src, copied to /www when the container starts); a container
# without /src/index.html serves "start VALUE" (VALUE from the environment: a stack edit
# changes it).
stack() {
  local dir=$1 action=$2 port=$3 value=$4 target=/www
  # sync+restart copies into /src, which only a (re)start serves: what is timed is the restart.
  [ "$action" = sync+restart ] && target=/src
  mkdir -p "$dir/www"
  cat > "$dir/compose.yaml" <<EOF
services:
  web:
    image: $IMG
    command: ["sh", "-c", "if [ -f /src/index.html ]; then cp /src/index.html /www/; else echo start \$\$V > /www/index.html; fi; exec httpd -f -p 8080 -h /www"]
    environment:
      V: "$value"
    ports: ["127.0.0.1:$port:8080"]
    develop:
      watch:
        - path: ./www
          action: $action
          target: $target
EOF
}

# watcher DIR: starts `flotilla watch` in DIR, waits until it watches; its pid in WATCHER.
watcher() {
  local dir=$1
  (cd "$dir" && exec "${F[@]}" watch > "$dir/watch.log" 2>&1) &
  WATCHER=$!
  WATCHERS+=("$WATCHER")
  for _ in $(seq 1200); do grep -q '^watch: watching' "$dir/watch.log" 2>/dev/null && return 0; sleep 0.05; done
  echo "watch.sh: the watcher of $dir never started" >&2; cat "$dir/watch.log" >&2; exit 1
}

# measure KIND DIR PORT: EDITS+1 edits (the first a warm-up), each timed from the write to the
# first HTTP answer with the new content; prints "median min p90 runs...".
measure() {
  python3 - "$1" "$2" "$3" "$EDITS" <<'PY'
import os, re, statistics, sys, time, urllib.request
kind, d, port, edits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
url = f"http://127.0.0.1:{port}/index.html"
def get():
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None
deadline = time.time() + 60
while get() is None:
    if time.time() > deadline: sys.exit(f"{kind}: the service never answered")
    time.sleep(0.05)
times = []
for i in range(edits + 1):
    want = f"{kind} edit {i} {time.time_ns()}"
    t0 = time.perf_counter()
    if kind == "stack":
        y = open(f"{d}/compose.yaml").read()
        y = re.sub(r'V: ".*"', f'V: "{want}"', y)
        open(f"{d}/compose.yaml", "w").write(y)
        want = f"start {want}"
    else:
        open(f"{d}/www/index.html.new", "w").write(want + "\n")
        os.rename(f"{d}/www/index.html.new", f"{d}/www/index.html")
    while True:
        body = get()
        if body is not None and body.strip() == want:
            break
        if time.perf_counter() - t0 > 30: sys.exit(f"{kind}: edit {i} never served")
        time.sleep(0.002)
    ms = (time.perf_counter() - t0) * 1000
    if i > 0: times.append(ms)
    time.sleep(0.3)
s = sorted(times)
p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
print(f"{statistics.median(times):.0f} {s[0]:.0f} {p90:.0f} " + " ".join(f"{t:.0f}" for t in times))
PY
}

echo "flotilla $("$FLOTILLA_BIN" --version 2>/dev/null | head -1), $(nproc) cores, EDITS=$EDITS, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v < t) ? "met" : "MISSED"}'; }
report() { # label target median min p90 runs...
  local label=$1 target=$2 med=$3 min=$4 p90=$5
  shift 5
  printf '  %-28s median %5s ms  min %5s  p90 %5s  (target < %s ms: %s)  runs: %s\n' \
    "$label" "$med" "$min" "$p90" "$target" "$(verdict "$med" "$target")" "$*"
}

for kind in sync restart stack; do
  dir=$WORK/p-$kind
  port=$(free_port)
  case $kind in
    restart) stack "$dir" sync+restart "$port" 0 ;;
    *) stack "$dir" sync "$port" 0 ;;
  esac
  echo "start" > "$dir/www/index.html"
  watcher "$dir"
  # shellcheck disable=SC2046
  set -- $(measure "$kind" "$dir" "$port")
  case $kind in
    sync) report "sync (edit -> served)" 150 "$@" ;;
    restart) report "sync+restart" 400 "$@" ;;
    stack) report "stack-file edit (recreate)" 500 "$@" ;;
  esac
  kill -INT "$WATCHER" 2>/dev/null; wait "$WATCHER" 2>/dev/null || true
  (cd "$dir" && "${F[@]}" down -t 0 >/dev/null 2>&1) || true
done

# --- the watcher idle on a big tree
dir=$WORK/p-tree
port=$(free_port)
stack "$dir" sync "$port" 0
python3 - "$dir/www" "$TREE" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 100
for i in range(n):
    d = os.path.join(root, f"d{i // per:04d}")
    if i % per == 0: os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % per:03d}.txt"), "w") as f: f.write(f"file {i}\n")
PY
echo "start" > "$dir/www/index.html"
t0=$(date +%s%N)
watcher "$dir"
t1=$(date +%s%N)
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$WATCHER/stat"; }
c0=$(cpu); sleep "$IDLE"; c1=$(cpu)
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$WATCHER/status")
dirs=$(find "$dir/www" -type d | wc -l)
printf '  watcher on %d files (%d dirs): up + ready in %d ms; idle %ss: %s CPU s (%s%%); RSS %s MiB\n' \
  "$TREE" "$dirs" $(((t1 - t0) / 1000000)) "$IDLE" \
  "$(awk -v a="$c0" -v b="$c1" -v t="$tick" 'BEGIN {printf "%.2f", (b - a) / t}')" \
  "$(awk -v a="$c0" -v b="$c1" -v t="$tick" -v s="$IDLE" 'BEGIN {printf "%.2f", 100 * (b - a) / t / s}')" \
  "$((rss / 1024))"
# Edits in the big tree still answer quickly.
# shellcheck disable=SC2046
set -- $(EDITS=3 measure sync "$dir" "$port")
report "sync in the ${TREE}-file tree" 150 "$@"
kill -INT "$WATCHER" 2>/dev/null; wait "$WATCHER" 2>/dev/null || true
