# Shared by the benchmark scripts (sourced). `bench_host_cleanup ROOT WORK`: whatever a run of a
# flotilla daemon on data root ROOT left on the host, by pid and by its own prefixes only:
# shims and container processes (from their state files), mounts under WORK, the links and
# nftables table of the root's network prefix (flt<4 hex>) and its cgroups (flotilla-<8 hex>):
# the first hex digits of sha256 of the data root's path.
bench_host_cleanup() {
  local root=$1 work=$2 s pid m l c hash
  for s in "$root"/containers/*/state.json; do
    [ -f "$s" ] || continue
    for pid in $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("shim_pid",""), d.get("pid",""))' "$s"); do
      kill -KILL "$pid" 2>/dev/null
    done
  done
  grep -o " $work/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
  hash=$(printf %s "$root" | sha256sum | cut -c1-8)
  for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^flt${hash:0:4}-" | sort -r); do
    ip link del "$l" 2>/dev/null
  done
  nft delete table inet "flt${hash:0:4}" 2>/dev/null
  for c in /sys/fs/cgroup/*/"flotilla-$hash" /sys/fs/cgroup/"flotilla-$hash"; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}
