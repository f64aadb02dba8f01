#!/usr/bin/env bash
# `make bench`: the helpers as whole processes, next to the seed scripts they
# replace, in fresh network namespaces; then the DHCP/DNS daemon's own
# benchmarks. Every figure is a median of one run, measured side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
n=${KVMNET_BENCH_N:-40}
echo "== helpers (median wall time of one process, ${n} runs of each side, interleaved)"
go test -run '^$' -bench . -benchtime "${n}x" ./test/bench | grep -E 'Benchmark|^ok|FAIL'
echo "== DHCP/DNS daemon"
go test -run '^$' -bench . -benchtime 2s ./internal/netsvc | grep -E 'Benchmark|^ok|FAIL'
