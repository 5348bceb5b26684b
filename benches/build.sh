#!/usr/bin/env bash
# Image build timings (issue 9, "Benchmark"): a 5-step Dockerfile on a busybox base with a
# context of 2 000 small files:
#   FROM busybox; RUN (a file); COPY files/ (the 2 000 files); RUN (reads them); COPY late.txt;
#   CMD
# - cold: `image build --no-cache` (every step runs; base image present),
# - cached: the same build again (every step CACHED),
# - touched: late.txt changed, then built (only its COPY and the CMD run again).
# Medians of RUNS (default 5) runs each, after one warm-up build. When Debian's `buildah` is
# installed, the same Dockerfile and context go through `buildah bud --layers` in the same run
# (its own storage under the work dir, `--isolation chroot`, the base image made with
# `buildah from scratch` + `add` of the same rootfs tarball).
#
# Root; needs busybox (busybox-static). Environment: RUNS, FLOTILLA_BIN (default:
# target/release/flotilla, built here), KEEP=1 keeps the work dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
. benches/lib.sh
RUNS=${RUNS:-5}
FILES=2000
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "build.sh: needs busybox (apt-get install -y busybox-static)" >&2; exit 1; }
if [ -z "${FLOTILLA_BIN:-}" ]; then
  cargo build --release --quiet
  FLOTILLA_BIN=$PWD/target/release/flotilla
fi

WORK=$(mktemp -d /tmp/flt-bench-build.XXXXXX)
ROOT=$WORK/root
SOCK=$WORK/run/flotilla.sock
IMG=bench-build/busybox:1
DAEMON_PID=
F=("$FLOTILLA_BIN" --data-root "$ROOT" -H "unix://$SOCK")
BUILDAH=(buildah --root "$WORK/buildah" --runroot "$WORK/buildah-run" --storage-driver vfs)

cleanup() {
  set +e
  if [ -n "$DAEMON_PID" ]; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null
  fi
  if command -v buildah >/dev/null && [ -d "$WORK/buildah" ]; then
    "${BUILDAH[@]}" rm -a >/dev/null 2>&1
    "${BUILDAH[@]}" rmi -a -f >/dev/null 2>&1
  fi
  bench_host_cleanup "$ROOT" "$WORK"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The base image: busybox and its applets.
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh true echo cat sleep ls mkdir wc; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$WORK/rootfs.tar" .

# The context.
CTX=$WORK/ctx
mkdir -p "$CTX/files"
for i in $(seq 1 "$FILES"); do echo "file $i" > "$CTX/files/f$i.txt"; done
echo "late 0" > "$CTX/late.txt"
cat > "$CTX/Dockerfile" <<EOF
FROM $IMG
RUN echo building > /built && mkdir -p /app
COPY files/ /app/files/
RUN ls /app/files | wc -l > /app/count
COPY late.txt /app/late.txt
CMD ["cat", "/app/late.txt"]
EOF

now_ns() { date +%s%N; }
ms() { # CMD...: runs it (output to $WORK/last.log), prints the wall time in ms
  local t0 t1
  t0=$(now_ns)
  if ! "$@" > "$WORK/last.log" 2>&1; then
    echo "build.sh: $* failed:" >&2
    tail -20 "$WORK/last.log" >&2
    exit 1
  fi
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000000))
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
n=0
touch_late() { n=$((n + 1)); echo "late $n" > "$CTX/late.txt"; }

# bench LABEL COLD... -- WARM...: medians of cold, cached and touched builds.
bench() {
  local label=$1 cold=() cached=() touched=() i
  shift
  local -a COLD=() WARM=()
  while [ "$1" != -- ]; do COLD+=("$1"); shift; done
  shift
  WARM=("$@")
  echo "== $label (load $(load))"
  ms "${COLD[@]}" > /dev/null # warm-up
  for i in $(seq 1 "$RUNS"); do
    cold+=("$(ms "${COLD[@]}")")
    cached+=("$(ms "${WARM[@]}")")
    touch_late
    touched+=("$(ms "${WARM[@]}")")
  done
  M_COLD=$(echo "${cold[*]}" | median)
  M_CACHED=$(echo "${cached[*]}" | median)
  M_TOUCHED=$(echo "${touched[*]}" | median)
  printf '  cold (--no-cache)          median %6s ms   runs: %s\n' "$M_COLD" "${cold[*]}"
  printf '  cached rebuild             median %6s ms   runs: %s\n' "$M_CACHED" "${cached[*]}"
  printf '  late COPY touched          median %6s ms   runs: %s\n' "$M_TOUCHED" "${touched[*]}"
}

mkdir -p "$WORK/run"
"$FLOTILLA_BIN" daemon --data-root "$ROOT" -H "unix://$SOCK" >> "$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "build.sh: the daemon did not start" >&2; cat "$WORK/daemon.log" >&2; exit 1; }
"${F[@]}" image import "$WORK/rootfs.tar" "$IMG" > /dev/null
echo "context: $FILES files + Dockerfile + late.txt; steps: FROM + 5; RUNS=$RUNS"
bench flotilla "${F[@]}" --progress quiet image build --no-cache -t bench-build/out:1 "$CTX" -- \
  "${F[@]}" --progress quiet image build -t bench-build/out:1 "$CTX"
FL_COLD=$M_COLD
FL_CACHED=$M_CACHED
out=$("${F[@]}" container run --rm bench-build/out:1)
[ "$out" = "late $n" ] || { echo "build.sh: the image says $out, not late $n" >&2; exit 1; }

if command -v buildah > /dev/null; then
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$WORK/rootfs.tar" / > /dev/null
  "${BUILDAH[@]}" commit -q "$ctr" "$IMG" > /dev/null
  "${BUILDAH[@]}" rm "$ctr" > /dev/null
  BUD=("${BUILDAH[@]}" bud --quiet --layers --isolation chroot --pull-never -t bench-build/out:1)
  bench "buildah $(buildah --version | cut -d' ' -f3)" "${BUD[@]}" --no-cache "$CTX" -- "${BUD[@]}" "$CTX"
  awk -v f="$FL_COLD" -v b="$M_COLD" 'BEGIN {printf "cold: buildah / flotilla = %.2fx (target >= 3x)\n", b / f}'
else
  echo "(buildah not installed: no baseline)"
fi
awk -v c="$FL_CACHED" 'BEGIN {printf "flotilla cached rebuild: %s ms (target < 200 ms): %s\n", c, (c < 200) ? "met" : "MISSED"}'
