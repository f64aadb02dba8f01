# kvmnet — see README.md. Every target that touches the network runs as root,
# and only inside network namespaces it makes itself.
PREFIX     ?= /usr
LIBEXECDIR ?= $(PREFIX)/libexec
BINDIR     ?= $(PREFIX)/bin
DESTDIR    ?=
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO         ?= go
GOFLAGS    ?= -trimpath
LDFLAGS    := -s -w -X github.com/kvmnet/kvmnet/internal/version.Version=$(VERSION)
HELPERS    := ifup ifdown natup natdown

.PHONY: all build deps install test e2e bench demo deb clean
all: build

# deps installs what build, test, bench and demo need on a fresh Debian machine.
deps:
	@scripts/deps.sh

build:
	@mkdir -p bin
	@for h in $(HELPERS); do \
	  CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/kvmnet-$$h ./cmd/qemu-$$h || exit 1; \
	done
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/kvmnet ./cmd/kvmnet
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o bin/kvmnet-libvirt-hook ./cmd/kvmnet-libvirt-hook

# install puts the helpers in $(LIBEXECDIR) and kvmnet in $(BINDIR).
# LINK_QEMU=1 also points /etc/qemu-ifup and /etc/qemu-ifdown at the NAT helpers,
# so that a bare `-netdev tap` works with no script= at all.
# NETWORKS="lab dmz" adds kvmnet-ifup@lab, kvmnet-natup@lab, ... links for named networks.
# LIBVIRT_HOOK=1 also links /etc/libvirt/hooks/qemu.d/kvmnet to the libvirt hook
# (libvirtd finds it when it next starts).
install: build
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(BINDIR)
	for h in $(HELPERS); do install -m 0755 bin/kvmnet-$$h $(DESTDIR)$(LIBEXECDIR)/kvmnet-$$h; done
	install -m 0755 bin/kvmnet $(DESTDIR)$(BINDIR)/kvmnet
	install -m 0755 bin/kvmnet-libvirt-hook $(DESTDIR)$(LIBEXECDIR)/kvmnet-libvirt-hook
	for n in $(NETWORKS); do for h in $(HELPERS); do \
	  ln -sf kvmnet-$$h $(DESTDIR)$(LIBEXECDIR)/kvmnet-$$h@$$n; done; done
	if [ "$(LINK_QEMU)" = 1 ]; then install -d $(DESTDIR)/etc; \
	  ln -sf $(LIBEXECDIR)/kvmnet-natup $(DESTDIR)/etc/qemu-ifup; \
	  ln -sf $(LIBEXECDIR)/kvmnet-natdown $(DESTDIR)/etc/qemu-ifdown; fi
	if [ "$(LIBVIRT_HOOK)" = 1 ]; then install -d $(DESTDIR)/etc/libvirt/hooks/qemu.d; \
	  ln -sf $(LIBEXECDIR)/kvmnet-libvirt-hook $(DESTDIR)/etc/libvirt/hooks/qemu.d/kvmnet; fi

test: deps build
	@scripts/test.sh

# e2e runs only the booted-guest suite (a part of `make test`).
e2e: deps build
	go test -count=1 -v ./test/e2e

bench: deps build
	@scripts/bench.sh

demo: deps build
	@scripts/demo.sh

# deb builds $(DISTDIR)/kvmnet_$(DEB_VERSION)_amd64.deb with nfpm, run from the
# Go module proxy at a pinned version, so that no tool binary is kept here.
# (nfpm 2.46 and later need modules the proxy here refuses.)
NFPM        ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DISTDIR     ?= dist
DEB_VERSION := $(shell packaging/debversion.sh '$(VERSION)')
DEB         := $(DISTDIR)/kvmnet_$(DEB_VERSION)_amd64.deb

deb: build
	@mkdir -p $(DISTDIR)/man
	$(GO) run ./packaging/mangen -o $(DISTDIR)/man -version $(DEB_VERSION)
	DEB_VERSION=$(DEB_VERSION) DISTDIR=$(DISTDIR) $(NFPM) package -f packaging/nfpm.yaml -p deb -t $(DEB)

clean:
	rm -rf bin dist
