#!/usr/bin/env bash
# Cold pull of the ~100 MB, 4-layer image from a loopback registry: median MB/s over 5 runs for
# flotilla (library pull, and the `flotilla image pull` command when it builds) and for
# `skopeo copy docker://… dir:…` as the baseline, in the same run. The registry (Debian's
# docker-registry on a free 127.0.0.1 port) and the image are made by benches/pull.rs itself, so
# nothing else needs to be running. RUNS=N changes the number of runs. See benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker-registry >/dev/null || {
  echo "pull.sh: needs docker-registry (apt-get install -y docker-registry)" >&2
  exit 1
}
command -v skopeo >/dev/null || echo "pull.sh: skopeo not installed (apt-get install -y skopeo): no baseline" >&2
if cargo build --release --quiet --bin flotilla 2>/dev/null &&
  target/release/flotilla image pull --help >/dev/null 2>&1; then
  export FLOTILLA_BIN="$PWD/target/release/flotilla"
else
  echo "pull.sh: no \`flotilla image pull\` command built: timing the library pull only" >&2
fi
exec cargo bench --quiet --bench pull
