#!/usr/bin/env bash
# `make bench`: the helpers as whole processes, next to the seed scripts they
# replace, in fresh network namespaces; then the DHCP/DNS daemon's own
# benchmarks, and its DNS forwarder beside dnsmasq under dnsperf. Every
# figure is a median of one run, measured side by side.
#
# The helpers run in a mount namespace of their own with a tmpfs on
# /run/kvmnet, where they keep their state: /run is a tmpfs on every Debian
# host, and on a machine whose /run is on disk each of the up's atomic file
# writes would cost a journal commit no host pays. KVMNET_BENCH_RUN_AS_IS=1
# measures on the machine's own /run instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
n=${KVMNET_BENCH_N:-40}
helpers=(go test -run '^$' -bench . -benchtime "${n}x" ./test/bench)
run=$(findmnt -n -o FSTYPE --target /run/kvmnet 2>/dev/null || findmnt -n -o FSTYPE --target /run)
if [ "${KVMNET_BENCH_RUN_AS_IS:-}" != 1 ] && [ "$run" != tmpfs ]; then
  mkdir -p /run/kvmnet
  echo "== (/run is $run here: the helpers' state goes to a tmpfs on /run/kvmnet in a mount namespace of their own)"
  helpers=(unshare --mount --propagation private sh -c 'mount -t tmpfs -o mode=0755 kvmnet-bench /run/kvmnet && exec "$@"' sh "${helpers[@]}")
fi
echo "== helpers (median wall time of one process, ${n} runs of each side, interleaved)"
"${helpers[@]}" | grep -E 'Benchmark|^ok|FAIL'
echo "== DHCP/DNS daemon"
go test -run '^$' -bench 'DHCP|DNSGuestName|DaemonRSS' -benchtime 2s ./internal/netsvc | grep -E 'Benchmark|^ok|FAIL'
# The daemon's memory beside dnsmasq's (libvirt's flags; with
# KVMNET_BENCH_BEFORE, that build's daemon too): RSS, PSS and private
# (anonymous) memory at rest and with 1000 leases, and the PSS each of
# ${KVMNET_BENCH_NETWORKS:-8} networks adds, as ratios -x-dnsmasq.
echo "== DHCP/DNS daemon's memory beside dnsmasq (ratios under 1 are kvmnet smaller)"
go test -run '^$' -bench DaemonMemory -benchtime 1x -v ./internal/netsvc | grep -E 'Benchmark|mem_bench|^ok|FAIL' | tr '\t' ' ' | sed 's/  */ /g'
# dnsperf against kvmnet's forwarder and dnsmasq (libvirt's flags) in turn,
# three rounds of ${KVMNET_BENCH_DNS_SECONDS:-2} s each per kind of name:
# the median qps ratio (-qps-x-dnsmasq), average latencies, and both
# daemons' memory.
echo "== DNS forwarder beside dnsmasq (dnsperf; ratios over 1 are kvmnet faster)"
go test -run '^$' -bench DNSVersusDnsmasq -benchtime 1x -v ./internal/netsvc | grep -E 'Benchmark|kvmnet |^ok|FAIL' | tr '\t' ' ' | sed 's/  */ /g'
