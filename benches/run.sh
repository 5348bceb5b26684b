#!/usr/bin/env bash
# Container start-to-exit latency: `flotilla container run --rm IMG true` (network none, and on
# the daemon's default bridge network: netns, veth, address, DNS name) through a daemon of its
# own (data root, socket) against `crun run` on an OCI bundle of the same busybox rootfs
# and plain `unshare --fork --pid --mount --uts --ipc --net true`, in the same run. Median, min
# and p90 of RUNS (default 25) timed runs after 3 warm-up runs each. Root; needs busybox-static
# and crun (apt-get install -y busybox-static crun).
#
# crun 1.8 refuses cgroup v1 hybrid mode while the unified hierarchy holds a controller (here:
# hugetlb). Instead of changing the host (setup-peers.sh mounts a v1 hugetlb hierarchy), crun runs
# in a private mount namespace where /sys/fs/cgroup/unified is unmounted: pure v1 for crun only.
#
# Environment: RUNS, FLOTILLA_BIN (default: target/release/flotilla, built here), KEEP=1 keeps
# the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-25}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
command -v crun >/dev/null || { echo "run.sh: needs crun (apt-get install -y crun)" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "run.sh: needs busybox-static" >&2; exit 1; }
if [ -z "${FLOTILLA_BIN:-}" ]; then
  cargo build --release --quiet
  FLOTILLA_BIN=$PWD/target/release/flotilla
fi

WORK=$(mktemp -d /tmp/flt-bench-run.XXXXXX)
DAEMON_PID=
cleanup() {
  if [ -n "$DAEMON_PID" ]; then
    "${F[@]}" container rm --force $("${F[@]}" container ls -aq 2>/dev/null) >/dev/null 2>&1 || true
    # The default bridge network (its bridge and nftables table are host-global).
    "${F[@]}" network rm bridge >/dev/null 2>&1 || true
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The rootfs: busybox and a few applet links.
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh true echo cat sleep ls; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$WORK/rootfs.tar" .
F=("$FLOTILLA_BIN" --data-root "$WORK/root" --host "unix://$WORK/flotilla.sock")
# The daemon of this run (its own socket; no DNS forwarding off the machine).
printf '[dns]\nupstreams = []\n' > "$WORK/daemon.toml"
"$FLOTILLA_BIN" daemon --data-root "$WORK/root" --host "unix://$WORK/flotilla.sock" \
  --config "$WORK/daemon.toml" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 1 500); do [ -S "$WORK/flotilla.sock" ] && break; sleep 0.02; done
[ -S "$WORK/flotilla.sock" ] || { echo "run.sh: the daemon did not start" >&2; cat "$WORK/daemon.log" >&2; exit 1; }
"${F[@]}" image import "$WORK/rootfs.tar" bench/run:1 >/dev/null

# The crun bundle of the same rootfs.
B=$WORK/bundle
mkdir -p "$B"
(cd "$B" && crun spec)
python3 - "$B/config.json" "$R" <<'PY'
import json, sys
p, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["process"]["env"] = ["PATH=/bin"]
json.dump(c, open(p, "w"), indent=1)
PY

# time_runs NAME CMD… : prints "NAME: median X ms (min Y, p90 Z, n=N)".
time_runs() {
  local name=$1; shift
  local i t0 t1 times=()
  for i in 1 2 3; do "$@" >/dev/null 2>&1 || { echo "$name: warm-up run failed: $*" >&2; "$@"; exit 1; }; done
  for ((i = 0; i < RUNS; i++)); do
    t0=$EPOCHREALTIME
    "$@" >/dev/null
    t1=$EPOCHREALTIME
    times+=("$(echo "($t1 - $t0) * 1000" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v name="$name" '
    { v[NR] = $1 }
    END { printf "%-46s median %7.2f ms  (min %.2f, p90 %.2f, n=%d)\n", name, v[int((NR + 1) / 2)], v[1], v[int(NR * 0.9 + 0.5)], NR }'
}
export -f time_runs
export RUNS

echo "container start-to-exit, $RUNS runs each (after 3 warm-up runs)"
time_runs "unshare --fork --pid --mount --uts --ipc --net" unshare --fork --pid --mount --uts --ipc --net true
# crun in its own mount namespace without the unified hierarchy (see above).
unshare -m bash -c "
  umount /sys/fs/cgroup/unified 2>/dev/null || true
  n=0
  crun_once() { n=\$((n + 1)); crun run --bundle '$B' \"bench-$$-\$n\"; }
  time_runs 'crun run (OCI bundle)' crun_once
"
time_runs "flotilla container run --rm (network none)" "${F[@]}" container run --rm --network none bench/run:1 true
time_runs "flotilla container run --rm --network bridge" "${F[@]}" container run --rm --network bridge bench/run:1 true
if [ "${PROFILE:-0}" = 1 ]; then
  echo "where flotilla's time goes (one run, strace -f -r summary):"
  strace -f -c -o "$WORK/strace.txt" "${F[@]}" container run --rm --network none bench/run:1 true || true
  head -25 "$WORK/strace.txt"
fi
