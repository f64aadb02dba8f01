#!/usr/bin/env bash
# `make test` (after `make deps build`): vet, every package's tests (unit,
# network-namespace and end-to-end with booted guests), then bounded fuzzing.
# The e2e tests need root; as another user they skip and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

echo "== go vet ./..."
go vet ./...

# go.mod and go.sum as go mod tidy leaves them: a merge that requires a
# module twice builds here but fails `go mod vendor` (TestMakeInstall).
echo "== go mod tidy -diff"
go mod tidy -diff

# staticcheck at a pinned version, from the Go module proxy like the modules.
echo "== staticcheck ./..."
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test ./..."
go test -count=1 -timeout 30m ./...

# The packages again under the race detector: the DHCP/DNS daemon serves
# concurrently, and an up runs its rules and the daemon's start in the
# background. (Not test/...: they run the binaries, built static without it.)
echo "== go test -race ./internal/..."
CGO_ENABLED=1 go test -race -count=1 -timeout 30m ./internal/...

# ---- Fuzzing: a bounded run of every Fuzz target, per package. ----
# Packages with parsers fed by guests (DHCP/DNS in internal/netsvc) add Fuzz
# targets; list their package here, as does the config loader (FuzzLoad,
# FuzzTapName in internal/config). KVMNET_FUZZTIME (any -fuzztime, 1000x or
# 20s) changes the budget; KVMNET_FUZZTIME=0 skips this step.
# The budget is a count of inputs, not a duration: with -fuzztime 20s, Go
# before 1.27 can fail a target with a bare "context deadline exceeded" and no
# failing input when the deadline races a worker's last call (golang/go#75804).
# 300000 inputs take 13-25 s per target on a 2-CPU machine.
fuzz_pkgs=(./internal/netsvc ./internal/config ./internal/cli)
fuzztime=${KVMNET_FUZZTIME:-300000x}
if [ "$fuzztime" != 0 ]; then
	for pkg in "${fuzz_pkgs[@]}"; do
		[ -d "$pkg" ] || continue
		for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
			echo "== fuzz $pkg $f ($fuzztime)"
			go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" "$pkg"
		done
	done
fi
