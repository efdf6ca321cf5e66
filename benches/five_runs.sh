#!/usr/bin/env bash
# Five consecutive runs of every bench's interleaved pass, as README's performance table
# is made: release builds of every bench, then each bench binary with ABBA_ONLY=1, all
# of them once per run (run 1 of every bench, then run 2, ...), and a summary of every
# ratio over the runs with how many held their target.
#
# Run with: bash benches/five_runs.sh [log] [runs]   (about 8 minutes on 2 cores)
# ABBA_FILTER=<part of a name> narrows it to some pairs, as for one bench.
set -euo pipefail
cd "$(dirname "$0")/.."
log=${1:-target/five_runs.log}
runs=${2:-5}
mkdir -p "$(dirname "$log")"

# The benches' executables, from cargo's own report of what it built.
mapfile -t bins < <(cargo bench --all-features --no-run --message-format=json 2>/dev/null |
  grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
[ "${#bins[@]}" -gt 0 ] || { echo "no bench executables built" >&2; exit 1; }

: >"$log"
for run in $(seq 1 "$runs"); do
  for bin in "${bins[@]}"; do
    echo "=== run $run $(basename "$bin") $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)" >>"$log"
    ABBA_ONLY=1 "$bin" --bench >>"$log" 2>&1
  done
done

# One line per ratio: its figures in run order, and the runs that met the target.
awk '/^ratio / {
  name = $2; fig = $3; sub(/×$/, "", fig)
  if (!(name in figs)) { order[++n] = name; target[name] = ($5 == "none") ? "no target" : $5 $6 }
  figs[name] = figs[name] (figs[name] == "" ? "" : ", ") fig
  runs[name]++; if ($NF == "ok") held[name]++
}
END {
  for (i = 1; i <= n; i++) {
    name = order[i]
    line = name " " target[name] ": " figs[name]
    if (target[name] != "no target") line = line " (" held[name] + 0 "/" runs[name] " held)"
    print line
  }
}' "$log"
