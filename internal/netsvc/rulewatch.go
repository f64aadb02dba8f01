package netsvc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/nfgen"
)

// Heal puts back the network's rules through the engine (the kvmnet binary:
// netsvc cannot import the rule engine) and returns what it restored, one
// change a line; none when nothing was missing.
type Heal = func(ctx context.Context, network string) (restored []string, err error)

const (
	// healQuiet is how long the firewall must stay still before a heal: a
	// reload (nft -f, iptables-restore, firewalld) is many transactions in
	// a few milliseconds, and one heal after the last is enough.
	healQuiet = 50 * time.Millisecond
	// healLatest bounds the wait for quiet, so that a program that never
	// stops changing the firewall still gets the rules put back.
	healLatest = 300 * time.Millisecond
	// healBurst heals that restored something within healWindow mean that
	// another program takes the rules out as fast as they go back in.
	healBurst  = 5
	healWindow = 2 * time.Second
	// maxBackoff caps the pause between heals while the fight goes on.
	maxBackoff = time.Minute
	// legacyInterval is how often the x_tables (iptables-legacy) tables
	// are read: the kernel sends no news of their changes.
	legacyInterval = time.Second
	// selfComm is the kvmnet binary's process name: its transactions (any
	// network's up, heal or down) only make networks whole or remove their
	// own, so they start no heal, and a heal never heals its own work.
	selfComm = "kvmnet"
)

// watchRules heals the network's rules whenever another program changes the
// firewall: nf_tables transactions arrive as netlink notifications (the
// NFNLGRP_NFTABLES group, as `nft monitor`); legacy x_tables tables, which
// send none, are read every legacyInterval when there are any. It never
// fails the daemon.
func (s *Server) watchRules(ctx context.Context) error {
	changes := make(chan string, 1)
	go s.followNFT(ctx, changes)
	h := healer{s: s, changes: changes}
	h.legacy = h.tables.digest()
	h.run(ctx)
	return nil
}

// healer debounces changes into heals and backs off from a fight.
type healer struct {
	s       *Server
	changes <-chan string // who changed the firewall: "nft (pid 1234)"
	legacy  uint64        // the x_tables tables' digest after the last heal
	tables  legacyReader  // reads that digest
	recent  []time.Time   // heals that restored something, within healWindow
	last    time.Time     // the last heal that restored something
	backoff time.Duration // the pause while another program fights, 0 when none
}

func (h *healer) run(ctx context.Context) {
	tick := time.NewTicker(legacyInterval)
	defer tick.Stop()
	var due <-chan time.Time // the pending heal's timer, nil when none
	var who string
	var first time.Time
	note := func(by string) {
		now := time.Now()
		if h.backoff > 0 && now.Sub(h.last) > 2*h.backoff+healWindow {
			h.backoff = 0 // the fight is long over
		}
		switch {
		case due != nil && h.backoff > 0:
			return // the paused heal keeps its time
		case due == nil:
			who, first = by, now
		}
		wait := h.backoff
		if wait == 0 {
			wait = min(healQuiet, max(first.Add(healLatest).Sub(now), 0))
		}
		due = time.After(wait)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case by := <-h.changes:
			note(by)
		case <-tick.C:
			if d := h.tables.digest(); d != h.legacy {
				h.legacy = d
				note("iptables-legacy")
			}
		case <-due:
			due = nil
			h.heal(ctx, who)
		}
	}
}

// heal runs one heal and logs what it restored and who changed the firewall.
func (h *healer) heal(ctx context.Context, who string) {
	s := h.s
	restored, err := s.heal(ctx, s.cfg.Network)
	h.legacy = h.tables.digest() // the heal's own changes start no heal
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.log.Warn("rules changed; heal failed", "by", who, "err", err.Error())
		return
	}
	if len(restored) == 0 {
		h.backoff = 0
		return
	}
	s.log.Info("rules restored", "by", who, "restored", strings.Join(restored, "; "))
	now := time.Now()
	h.recent, h.last = append(h.recent, now), now
	for now.Sub(h.recent[0]) > healWindow {
		h.recent = h.recent[1:]
	}
	if h.backoff > 0 || len(h.recent) >= healBurst {
		h.backoff = min(max(2*h.backoff, time.Second), maxBackoff)
		s.log.Warn("another program keeps removing the rules; healing less often",
			"by", who, "heals", len(h.recent), "within", healWindow.String(), "next_after", h.backoff.String())
	}
}

// followNFT sends on changes who made each nf_tables transaction that may
// have touched the network's rules, subscribing again when the subscription
// breaks. A lost event (a full socket buffer) counts as a change.
//
// The watch-only role's first subscription checks the generation its
// starter gave: a change between the up and the subscription is a change
// too, and so is an unknown generation.
func (s *Server) followNFT(ctx context.Context, changes chan<- string) {
	subscribed := func() {
		if s.rulesGen == nil {
			return
		}
		if gen, err := nfgen.Generation(); err != nil || gen != *s.rulesGen {
			send(changes, "unknown (before the watcher began)")
		}
	}
	for ctx.Err() == nil {
		err := readNFT(ctx, changes, subscribed)
		subscribed = func() {}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("nf_tables subscription lost; subscribing again", "err", err.Error())
		send(changes, "unknown (subscription lost)")
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeDelay):
		}
	}
}

// send offers a change without blocking: one pending is enough to heal.
func send(changes chan<- string, who string) {
	select {
	case changes <- who:
	default:
	}
}

// readNFT is one subscription to nf_tables' notifications: `nft monitor`.
// subscribed is called once the socket receives them.
func readNFT(ctx context.Context, changes chan<- string, subscribed func()) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("nf_tables socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "nf_tables monitor") // non-blocking: Close ends a Read
	defer f.Close()
	// A reload comes as thousands of messages at once: room for them.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)}); err != nil {
		return fmt.Errorf("subscribe to nf_tables: %w", err)
	}
	subscribed()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	buf := make([]byte, 1<<16)
	var t transaction
	for {
		n, err := f.Read(buf)
		if errors.Is(err, unix.ENOBUFS) {
			send(changes, "unknown (events lost)")
			t = transaction{}
			continue
		}
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("nf_tables notification: %w", err)
		}
		for _, m := range msgs {
			if who, heal := t.add(m); heal {
				send(changes, who)
			}
		}
	}
}

// transaction gathers one nf_tables transaction's notifications: its
// objects' messages, then NFT_MSG_NEWGEN, which names the process.
type transaction struct{ touched bool }

// add takes one message; at the transaction's end it reports whether to heal
// and who made it.
func (t *transaction) add(m syscall.NetlinkMessage) (who string, heal bool) {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return "", false
	}
	switch typ := m.Header.Type & 0xff; typ {
	case unix.NFT_MSG_NEWGEN:
		touched := t.touched
		*t = transaction{}
		pid, comm := genProcess(m.Data)
		if !touched || comm == selfComm {
			return "", false
		}
		if comm == "" {
			return "unknown", true
		}
		return comm + " (pid " + strconv.Itoa(pid) + ")", true
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		// A set's elements (fail2ban's bans, Docker's ports) take no rule
		// away, and change often.
	default:
		t.touched = true
	}
	return "", false
}

// genProcess reads NFT_MSG_NEWGEN's NFTA_GEN_PROC_PID and NFTA_GEN_PROC_NAME:
// the process that committed the transaction ("" when the kernel names none).
func genProcess(data []byte) (pid int, comm string) {
	if len(data) < nl.SizeofNfgenmsg {
		return 0, ""
	}
	attrs, err := nl.ParseRouteAttr(data[nl.SizeofNfgenmsg:])
	if err != nil {
		return 0, ""
	}
	for _, a := range attrs {
		switch a.Attr.Type &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
		case unix.NFTA_GEN_PROC_PID:
			if len(a.Value) >= 4 {
				pid = int(uint32(a.Value[0])<<24 | uint32(a.Value[1])<<16 | uint32(a.Value[2])<<8 | uint32(a.Value[3]))
			}
		case unix.NFTA_GEN_PROC_NAME:
			comm = strings.TrimRight(string(a.Value), "\x00")
		}
	}
	return pid, comm
}
