# shellcheck shell=bash
# Shared by the benchmarks: the line each prints per measured figure, which bench/run gathers into
# one table. Fields: what was measured, modbox's figure, the baseline's figure (raw Podman or a direct
# connection, measured in the same run), their ratio, the target, and whether it was met.
bench_result() {  # WHAT MODBOX BASELINE RATIO TARGET MET
  printf 'RESULT\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@"
}
