# kvmnet — see README.md. Every target that touches the network runs as root,
# and only inside network namespaces it makes itself.
PREFIX     ?= /usr
LIBEXECDIR ?= $(PREFIX)/libexec
BINDIR     ?= $(PREFIX)/bin
DESTDIR    ?=
UNITDIR    ?= /lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/kvmnet
CONFDIR    ?= /etc/kvmnet
# BUILDDIR is where build leaves the binaries and man pages (tests build
# into a temporary one, never into the tree's bin/).
BUILDDIR   ?= bin
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO         ?= go
GOFLAGS    ?= -trimpath
LDFLAGS    := -s -w -X github.com/kvmnet/kvmnet/internal/version.Version=$(VERSION)
HELPERS    := ifup ifdown natup natdown

.PHONY: all build deps install uninstall test e2e bench demo deb clean
all: build

# deps installs what build, test, bench and demo need on a fresh Debian machine.
deps:
	@scripts/deps.sh

build:
	@mkdir -p $(BUILDDIR)
	@for h in $(HELPERS); do \
	  CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BUILDDIR)/kvmnet-$$h ./cmd/qemu-$$h || exit 1; \
	done
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BUILDDIR)/kvmnet ./cmd/kvmnet
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BUILDDIR)/kvmnet-netsvc ./cmd/kvmnet-netsvc
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BUILDDIR)/kvmnet-libvirt-hook ./cmd/kvmnet-libvirt-hook
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BUILDDIR)/kvmnet-bridge-helper ./cmd/kvmnet-bridge-helper
	$(GO) run $(GOFLAGS) ./packaging/mangen -o $(BUILDDIR)/man -version $(DEB_VERSION)

# install copies what `make build` left in bin/: the helpers and the DHCP/DNS
# daemon to $(LIBEXECDIR), kvmnet to $(BINDIR), the man pages, README and docs/, the boot unit
# kvmnet-up@.service (not enabled), and the example configuration unless one
# is there already: what the .deb installs. It never builds, so that `make
# build` as yourself, then `sudo make install` works though sudo's PATH has no Go.
# LINK_QEMU=1 also points /etc/qemu-ifup and /etc/qemu-ifdown at the NAT helpers,
# so that a bare `-netdev tap` works with no script= at all (a file already
# there is kept as FILE.before-kvmnet, and put back by uninstall).
# NETWORKS="lab dmz" adds kvmnet-ifup@lab, kvmnet-natup@lab, ... links for named
# networks (`kvmnet link` makes them for every configured network).
# LIBVIRT_HOOK=1 also links /etc/libvirt/hooks/qemu.d/kvmnet to the libvirt hook
# (libvirtd finds it when it next starts).
BINARIES := kvmnet kvmnet-netsvc kvmnet-libvirt-hook kvmnet-bridge-helper $(addprefix kvmnet-,$(HELPERS))
QEMU_LINKS := /etc/qemu-ifup:kvmnet-natup /etc/qemu-ifdown:kvmnet-natdown

MAN1       := kvmnet.1.gz
MAN8       := $(addsuffix .8.gz,$(addprefix kvmnet-,$(HELPERS) bridge-helper libvirt-hook))
BUILT      := $(BINARIES) $(addprefix man/,$(MAN1) $(MAN8))
MISSING    = $(filter-out $(wildcard $(addprefix $(BUILDDIR)/,$(BUILT))),$(addprefix $(BUILDDIR)/,$(BUILT)))
EXAMPLE    := $(DESTDIR)$(CONFDIR)/kvmnet.toml.example
UNIT       := $(DESTDIR)$(UNITDIR)/kvmnet-up@.service

install:
	$(if $(MISSING),$(error $(firstword $(MISSING)) is missing: run make build first (install does not build)))
	install -d $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CONFDIR)
	for h in $(HELPERS); do install -m 0755 $(BUILDDIR)/kvmnet-$$h $(DESTDIR)$(LIBEXECDIR)/kvmnet-$$h; done
	install -m 0755 $(BUILDDIR)/kvmnet $(DESTDIR)$(BINDIR)/kvmnet
	install -m 0755 $(BUILDDIR)/kvmnet-netsvc $(DESTDIR)$(LIBEXECDIR)/kvmnet-netsvc
	install -m 0755 $(BUILDDIR)/kvmnet-libvirt-hook $(DESTDIR)$(LIBEXECDIR)/kvmnet-libvirt-hook
	install -m 0644 $(addprefix $(BUILDDIR)/man/,$(MAN1)) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(addprefix $(BUILDDIR)/man/,$(MAN8)) $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(DOCDIR)/docs
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	# The unit runs kvmnet where this install puts it.
	sed 's|/usr/bin/kvmnet|$(BINDIR)/kvmnet|g' packaging/kvmnet-up@.service >$(UNIT).tmp && \
	  chmod 0644 $(UNIT).tmp && mv -f $(UNIT).tmp $(UNIT)
	# An example already there may be the admin's edit: keep it, as dpkg does.
	if [ ! -e $(EXAMPLE) ] && [ ! -L $(EXAMPLE) ]; then install -m 0644 packaging/kvmnet.toml.example $(EXAMPLE); fi
	# setuid root, as QEMU's own bridge helper is installed: ordinary users'
	# QEMU runs it (see "Why setuid root" in docs/security.md for why not
	# file capabilities).
	install -m 4755 $(BUILDDIR)/kvmnet-bridge-helper $(DESTDIR)$(LIBEXECDIR)/kvmnet-bridge-helper
	for n in $(NETWORKS); do for h in $(HELPERS); do \
	  ln -sfn kvmnet-$$h $(DESTDIR)$(LIBEXECDIR)/kvmnet-$$h@$$n; done; done
	if [ "$(LINK_QEMU)" = 1 ]; then install -d $(DESTDIR)/etc; \
	  for l in $(QEMU_LINKS); do f=$(DESTDIR)$${l%%:*} t=$(LIBEXECDIR)/$${l#*:}; \
	    if { [ -e "$$f" ] || [ -L "$$f" ]; } && [ "$$(readlink "$$f")" != "$$t" ]; then mv "$$f" "$$f.before-kvmnet"; fi; \
	    ln -sfn "$$t" "$$f"; done; fi
	if [ "$(LIBVIRT_HOOK)" = 1 ]; then install -d $(DESTDIR)/etc/libvirt/hooks/qemu.d; \
	  ln -sfn $(LIBEXECDIR)/kvmnet-libvirt-hook $(DESTDIR)/etc/libvirt/hooks/qemu.d/kvmnet; fi

# uninstall removes what install put there, whatever LINK_QEMU and NETWORKS
# were: the binaries, every kvmnet-HELPER@NETWORK link to a helper (`kvmnet
# link` makes them too), and /etc/qemu-if{up,down} only while they point at
# kvmnet, putting back what install kept aside; the libvirt hook and its link
# only while it points at the hook; the man pages and the unit; the example
# configuration only while it is unchanged. It leaves the leases, /run/kvmnet
# and a kvmnet.toml. Pass the same PREFIX and DESTDIR.
uninstall:
	for h in $(HELPERS); do for l in $(DESTDIR)$(LIBEXECDIR)/kvmnet-$$h@*; do \
	  if [ -L "$$l" ] && [ "$$(readlink "$$l")" = kvmnet-$$h ]; then rm -f "$$l"; fi; done; done
	rm -f $(addprefix $(DESTDIR)$(LIBEXECDIR)/kvmnet-,$(HELPERS) netsvc libvirt-hook bridge-helper) $(DESTDIR)$(BINDIR)/kvmnet
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(MAN1)) $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(MAN8)) $(UNIT)
	rm -rf $(DESTDIR)$(DOCDIR)
	if cmp -s packaging/kvmnet.toml.example $(EXAMPLE); then rm -f $(EXAMPLE); fi
	if [ -d $(DESTDIR)$(CONFDIR) ]; then rmdir --ignore-fail-on-non-empty $(DESTDIR)$(CONFDIR); fi
	h=$(DESTDIR)/etc/libvirt/hooks/qemu.d/kvmnet; \
	  if [ -L "$$h" ] && [ "$$(readlink "$$h")" = $(LIBEXECDIR)/kvmnet-libvirt-hook ]; then rm -f "$$h"; fi
	for l in $(QEMU_LINKS); do f=$(DESTDIR)$${l%%:*} t=$(LIBEXECDIR)/$${l#*:}; \
	  if [ -L "$$f" ] && [ "$$(readlink "$$f")" = "$$t" ]; then rm -f "$$f"; \
	    if [ -e "$$f.before-kvmnet" ]; then mv "$$f.before-kvmnet" "$$f"; fi; fi; done

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
	@mkdir -p $(DISTDIR)
	DEB_VERSION=$(DEB_VERSION) BUILDDIR=$(BUILDDIR) $(NFPM) package -f packaging/nfpm.yaml -p deb -t $(DEB)

clean:
	rm -rf $(BUILDDIR) $(DISTDIR)
