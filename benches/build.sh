#!/usr/bin/env bash
# Image build timings (image build issue, "Benchmark"): a 5-step Dockerfile on a busybox base with a
# context of 2 000 small files —
#   FROM base; RUN (makes a file); COPY . (the 2 000 files); RUN (reads them); COPY late.txt
# measured as
#   - cold: `--no-cache` (every step runs, the base image present),
#   - cached: the same build again (every step from the cache),
#   - late edit: after appending to late.txt (only the last COPY runs again),
# medians of RUNS (default 5) runs each after one warm-up round. Where Debian's `buildah` is
# installed, `buildah bud --layers` builds the same Dockerfile and context in the same script,
# with its own storage under the work dir (`--isolation chroot`: crun refuses this machine's
# hybrid cgroups, and runc is not installed; chroot isolation is buildah's cheapest mode, so the
# comparison does not flatter flotilla; `--network host` for both sides' RUNs is not needed:
# no step uses the network).
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
BASE=bench-build/busybox:1
OUT=bench-build/out:1
DAEMON_PID=
F=("$FLOTILLA_BIN" --data-root "$ROOT" -H "unix://$SOCK")
BUILDAH=(buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" --storage-driver overlay)

cleanup() {
  set +e
  if [ -n "$DAEMON_PID" ]; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null
  fi
  bench_host_cleanup "$ROOT" "$WORK"
  if [ -d "$WORK/buildah" ]; then
    "${BUILDAH[@]}" rm --all >/dev/null 2>&1
    "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1
    grep -o " $WORK/buildah[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The base image: busybox and its applets.
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh true echo cat sleep ls wc mkdir; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
tar -C "$R" -cf "$WORK/rootfs.tar" .

# The context: 2 000 small files, late.txt, the Dockerfile.
CTX=$WORK/ctx
mkdir -p "$CTX/files"
for i in $(seq "$FILES"); do echo "file $i" > "$CTX/files/f$i.txt"; done
echo late > "$CTX/late.txt"
dockerfile() { # base
  cat <<EOF
FROM $1
RUN mkdir -p /app && echo built > /app/built
COPY files/ /app/files/
RUN ls /app/files | wc -l > /app/count
COPY late.txt /app/late.txt
EOF
}

now_ns() { date +%s%N; }
# ms CMD...: runs CMD (output to $WORK/last.log), prints the wall time in ms; a failure ends the
# run with the command's output.
ms() {
  local t0 t1
  t0=$(now_ns)
  if ! "$@" > "$WORK/last.log" 2>&1; then
    echo "build.sh: failed: $*" >&2
    tail -20 "$WORK/last.log" >&2
    exit 1
  fi
  t1=$(now_ns)
  echo $(((t1 - t0) / 1000000))
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# bench LABEL: the three measurements through the arrays COLD, CACHED (the same build with the
# cache), sets M_COLD M_CACHED M_LATE.
bench() {
  local label=$1 i cold=() cached=() late=() t
  echo "== $label (load $(load))"
  for i in $(seq 0 "$RUNS"); do
    t=$(ms "${COLD[@]}")
    [ "$i" = 0 ] || cold+=("$t")
    t=$(ms "${CACHED[@]}")
    [ "$i" = 0 ] || cached+=("$t")
    echo "edit $i" >> "$CTX/late.txt"
    t=$(ms "${CACHED[@]}")
    [ "$i" = 0 ] || late+=("$t")
  done
  M_COLD=$(echo "${cold[*]}" | median)
  M_CACHED=$(echo "${cached[*]}" | median)
  M_LATE=$(echo "${late[*]}" | median)
  printf '  cold (--no-cache)            median %6s ms   runs: %s\n' "$M_COLD" "${cold[*]}"
  printf '  cached rebuild               median %6s ms   runs: %s\n' "$M_CACHED" "${cached[*]}"
  printf '  rebuild after late edit      median %6s ms   runs: %s\n' "$M_LATE" "${late[*]}"
  echo "  (load after: $(load))"
}

# --- flotilla
mkdir -p "$WORK/run"
"$FLOTILLA_BIN" daemon --data-root "$ROOT" -H "unix://$SOCK" >> "$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "build.sh: the daemon did not start" >&2; cat "$WORK/daemon.log" >&2; exit 1; }
"${F[@]}" image import "$WORK/rootfs.tar" "$BASE" >/dev/null
dockerfile "$BASE" > "$CTX/Dockerfile"
echo "flotilla $("$FLOTILLA_BIN" --version 2>/dev/null | head -1), $(nproc) cores, RUNS=$RUNS, $FILES files, $(date -u +%FT%TZ)"
COLD=("${F[@]}" image build --no-cache --progress quiet -t "$OUT" "$CTX")
CACHED=("${F[@]}" image build --progress quiet -t "$OUT" "$CTX")
bench flotilla
F_COLD=$M_COLD F_CACHED=$M_CACHED F_LATE=$M_LATE
# The result is a real image: its RUN and COPY steps left what they should.
COUNT=$("${F[@]}" container run --rm "$OUT" cat /app/count 2>&1 | tr -d ' \r')
[ "$COUNT" = "$FILES" ] || { echo "build.sh: the built image's /app/count is '$COUNT', not $FILES" >&2; exit 1; }

# --- buildah, where installed
B_COLD=
if command -v buildah >/dev/null; then
  "${BUILDAH[@]}" from --name bench-base scratch >/dev/null
  "${BUILDAH[@]}" add bench-base "$WORK/rootfs.tar" / >/dev/null
  "${BUILDAH[@]}" commit -q bench-base "localhost/$BASE" >/dev/null
  "${BUILDAH[@]}" rm bench-base >/dev/null
  dockerfile "localhost/$BASE" > "$CTX/Dockerfile"
  COLD=("${BUILDAH[@]}" bud --layers --no-cache --isolation chroot -q -t "localhost/$OUT" "$CTX")
  CACHED=("${BUILDAH[@]}" bud --layers --isolation chroot -q -t "localhost/$OUT" "$CTX")
  bench "buildah bud ($(buildah --version | awk '{print $3}'), --isolation chroot)"
  B_COLD=$M_COLD
else
  echo "== buildah: not installed (apt-get install -y buildah); skipped"
fi

echo
echo "flotilla against the issue's targets:"
printf '  cached rebuild %s ms (target < 200 ms): %s\n' "$F_CACHED" "$(awk -v v="$F_CACHED" 'BEGIN {print (v < 200) ? "met" : "MISSED"}')"
if [ -n "$B_COLD" ]; then
  printf '  cold %s ms vs buildah %s ms: %sx (target >= 3x): %s\n' "$F_COLD" "$B_COLD" \
    "$(awk -v f="$F_COLD" -v b="$B_COLD" 'BEGIN {printf "%.1f", b / f}')" \
    "$(awk -v f="$F_COLD" -v b="$B_COLD" 'BEGIN {print (b >= 3 * f) ? "met" : "MISSED"}')"
fi
printf '  rebuild after a late edit %s ms\n' "$F_LATE"
