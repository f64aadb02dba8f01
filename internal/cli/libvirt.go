package cli

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/lifecycle"
	"github.com/kvmnet/kvmnet/internal/runlog"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
)

// The libvirt hook: libvirtd runs /etc/libvirt/hooks/qemu.d/kvmnet DOMAIN
// OPERATION SUBOP EXTRA with the domain's XML on stdin and only LC_ALL, PATH
// and HOME in its environment, and waits for it: every wait here is bounded.
const (
	hookProg = "kvmnet-libvirt-hook"
	// hookLockWait bounds the wait for a network's lock, which another VM's
	// up or down holds for milliseconds.
	hookLockWait = 15 * time.Second
	// hookReadWait bounds the wait for libvirt to finish writing the XML.
	hookReadWait = 10 * time.Second
	// maxDomainXML bounds the XML read; domains with hundreds of devices stay far below.
	maxDomainXML = 4 << 20
)

// LibvirtHook runs the libvirt hook with args (os.Args) and the domain XML on
// stdin, and returns its exit code. Only a failure before the guest runs
// exits non-zero: at `prepare` (the network cannot come up) and at `start`
// (a tap cannot be guarded or limited: the guest must not run unguarded),
// which makes libvirt refuse to start the domain with kvmnet's message and
// run `release`; a failure to keep the books on a running domain is logged,
// as a non-zero exit there would make libvirt kill it.
func LibvirtHook(args []string, stdin *os.File) int {
	switch {
	case len(args) == 2 && (args[1] == "--help" || args[1] == "-h"):
		HookUsage(os.Stdout)
		return ExitOK
	case len(args) == 2 && args[1] == "--version":
		fmt.Printf("%s %s\n", hookProg, version.Version)
		return ExitOK
	}
	start := time.Now()
	res, err := runHook(args, stdin)
	if len(res.done) == 0 && err == nil {
		return ExitOK // no kvmnet network in the domain: not ours, not logged
	}
	log := runlog.Open(hookProg)
	defer log.Close()
	for _, d := range res.done {
		log.Info(res.op, "domain", res.domain, "network", d.network, "changes", strings.Join(d.Changes, ","),
			"took", time.Since(start).Round(10*time.Microsecond).String())
		for _, w := range d.Warnings {
			log.Warn(w, "network", d.network)
		}
	}
	if err == nil {
		return ExitOK
	}
	log.Error(err)
	switch {
	case res.op != "" && res.op != "prepare" && res.op != "start" && res.op != "release":
		return ExitOK
	case errors.Is(err, errUsage):
		return ExitUsage
	}
	return ExitFail
}

type hookResult struct {
	op, domain string
	done       []netResult
}

type netResult struct {
	lifecycle.Result
	network string
}

// domainXML is what the hook reads of libvirt's domain XML.
type domainXML struct {
	XMLName    xml.Name      `xml:"domain"`
	Name       string        `xml:"name"`
	UUID       string        `xml:"uuid"`
	Interfaces []domainIface `xml:"devices>interface"`
}

// domainIface is one <interface> of the domain.
type domainIface struct {
	Type   string `xml:"type,attr"`
	Source struct {
		Bridge string `xml:"bridge,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
}

func runHook(args []string, stdin *os.File) (hookResult, error) {
	if len(args) != 5 {
		return hookResult{}, usagef("want 4 arguments, DOMAIN OPERATION SUBOP EXTRA, as libvirt passes them, got %d (see --help)", len(args)-1)
	}
	res := hookResult{domain: args[1], op: args[2]}
	// libvirt writes the XML for every operation; read it all, so that its
	// write never fails on a closed pipe.
	b, err := readDomainXML(stdin)
	if err != nil {
		return res, err
	}
	switch res.op {
	case "prepare", "start", "reconnect", "attach", "release":
	default:
		return res, nil // started, stopped, migrate, restore, save: nothing of kvmnet's
	}
	var dom domainXML
	if err := xml.Unmarshal(b, &dom); err != nil {
		return res, usageError{"domain " + res.domain + ": read its XML: " + err.Error()}
	}
	if err := checkUUID(dom.UUID); err != nil {
		return res, usageError{"domain " + res.domain + ": " + err.Error()}
	}
	if res.op == "release" {
		res.done, err = hookRelease(dom)
		return res, err
	}
	f, err := config.Load(config.Path())
	if f == nil {
		// The file is wrong as a whole: a domain on no bridge the file could
		// name is none of kvmnet's, and starts whatever the file holds.
		if !slices.ContainsFunc(dom.Interfaces, func(i domainIface) bool {
			return i.Type == "bridge" && config.Mentions(config.Path(), i.Source.Bridge)
		}) {
			return res, nil
		}
		return res, usageError{err.Error()}
	}
	uses, err := domainNetworks(f, dom) // a broken network fails only its domains
	if err != nil || len(uses) == 0 {
		return res, err
	}
	if !lifecycle.HasCap(unix.CAP_NET_ADMIN) {
		return res, usagef("needs CAP_NET_ADMIN: libvirtd runs its hooks as root with it")
	}
	d, err := hookDir()
	if err != nil {
		return res, err
	}
	rec := state.Domain{UUID: dom.UUID, Name: dom.Name, Since: time.Now()}
	if res.op == "prepare" {
		res.done, err = hookPrepare(d, f, rec, uses)
	} else {
		res.done, err = hookStart(d, f, rec, uses)
	}
	return res, err
}

// hookStart records the taps libvirt made for the domain on each network,
// and puts them under the network's guard and bandwidth. A network that
// fails does not keep the others' taps from theirs.
func hookStart(d state.Dir, f *config.File, dom state.Domain, uses []netUse) ([]netResult, error) {
	var done []netResult
	var errs []error
	for _, u := range uses {
		n, err := f.Network(u.network, config.NAT)
		if err != nil {
			errs = append(errs, usageError{err.Error()})
			continue
		}
		r, recorded, err := lifecycle.AddTaps(d, n, dom, u.taps)
		if recorded {
			done = append(done, netResult{Result: r, network: u.network})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: the taps of domain %s: %w", u.network, dom.Name, err))
		}
	}
	return done, errors.Join(errs...)
}

// netUse is a kvmnet network a domain has interfaces on, and libvirt's taps
// of them once it made them.
type netUse struct {
	network string
	taps    []string
}

// domainNetworks lists the kvmnet networks of the domain's <interface
// type='bridge'>s, in the order of their first interface.
func domainNetworks(f *config.File, dom domainXML) ([]netUse, error) {
	var uses []netUse
	for _, ifc := range dom.Interfaces {
		if ifc.Type != "bridge" {
			continue
		}
		name, ok := f.NetworkOnBridge(ifc.Source.Bridge)
		if !ok {
			continue
		}
		i := slices.IndexFunc(uses, func(u netUse) bool { return u.network == name })
		if i < 0 {
			uses = append(uses, netUse{network: name})
			i = len(uses) - 1
		}
		if tap := ifc.Target.Dev; tap != "" {
			if err := config.CheckIfName(tap); err != nil {
				return nil, usagef("domain %s: interface on %s: target dev: %s", dom.Name, ifc.Source.Bridge, err)
			}
			uses[i].taps = append(uses[i].taps, tap)
		}
	}
	return uses, nil
}

// hookPrepare sets up every network the domain uses. If one fails, those set
// up before are given back, so that nothing is left half-made.
func hookPrepare(d state.Dir, f *config.File, dom state.Domain, uses []netUse) ([]netResult, error) {
	var done []netResult
	for _, u := range uses {
		r, joined, err := join(d, f, dom, u.network)
		if joined {
			done = append(done, netResult{Result: r, network: u.network})
		}
		if err == nil {
			continue
		}
		for _, j := range done {
			if _, uerr := lifecycle.Leave(d, j.network, dom.UUID); uerr != nil {
				err = errors.Join(err, fmt.Errorf("give back network %s: %w", j.network, uerr))
			}
		}
		return nil, fmt.Errorf("network %s for domain %s: %w", u.network, dom.Name, err)
	}
	return done, nil
}

// join sets network name up for dom, unless it is the built-in default on a
// br0 that someone else made: the default network is kvmnet's only where
// kvmnet made it (an admin's br0 on the LAN must not get a DHCP server).
func join(d state.Dir, f *config.File, dom state.Domain, name string) (lifecycle.Result, bool, error) {
	n, err := f.Network(name, config.NAT)
	if err != nil {
		return lifecycle.Result{}, false, usageError{err.Error()}
	}
	if _, inFile := f.Networks[name]; !inFile {
		if foreign, err := lifecycle.Foreign(d, n); err != nil || foreign {
			return lifecycle.Result{}, false, err
		}
	}
	r, err := lifecycle.Join(d, n, dom)
	return r, err == nil, err
}

// hookRelease gives back every network the domain was recorded on: the
// records, not the XML, say which, so that a configuration changed while the
// domain ran cannot strand a network.
func hookRelease(dom domainXML) ([]netResult, error) {
	d, err := hookDir()
	if err != nil {
		return nil, err
	}
	names, err := d.DomainNetworks(dom.UUID)
	if err != nil {
		return nil, err
	}
	var done []netResult
	var errs []error
	for _, name := range names {
		r, err := lifecycle.Leave(d, name, dom.UUID)
		done = append(done, netResult{Result: r, network: name})
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s after domain %s: %w", name, dom.Name, err))
		}
	}
	return done, errors.Join(errs...)
}

func hookDir() (state.Dir, error) {
	d, err := state.Open()
	d.LockWait = hookLockWait
	return d, err
}

// readDomainXML reads stdin to its end, at most maxDomainXML bytes, giving
// up after hookReadWait.
func readDomainXML(stdin *os.File) ([]byte, error) {
	r := stdin
	// A pipe set non-blocking joins Go's poller, which honours a deadline.
	if fd := stdin.Fd(); unix.SetNonblock(int(fd), true) == nil {
		r = os.NewFile(fd, "stdin")
		_ = r.SetReadDeadline(time.Now().Add(hookReadWait))
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDomainXML+1))
	if err != nil {
		return nil, fmt.Errorf("read the domain XML on stdin: %w", err)
	}
	if len(b) > maxDomainXML {
		return nil, usagef("domain XML on stdin: longer than %d bytes", maxDomainXML)
	}
	return b, nil
}

// checkUUID accepts the form libvirt writes, e.g. 71e034e8-8034-44b1-9a13-590d20154371.
func checkUUID(s string) error {
	ok := len(s) == 36
	for i := 0; ok && i < len(s); i++ {
		switch c := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			ok = c == '-'
		default:
			ok = '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
		}
	}
	if !ok {
		return fmt.Errorf("uuid %q: want 8-4-4-4-12 hex digits", s)
	}
	return nil
}

// HookUsage writes the hook's --help, which is also its man page.
func HookUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: %[1]s DOMAIN OPERATION SUBOP EXTRA   (domain XML on stdin)

libvirt's qemu hook, installed as /etc/libvirt/hooks/qemu.d/kvmnet (restart
libvirtd after installing it: it looks for hooks when it starts).

For each <interface type='bridge'> whose <source bridge=…/> is a kvmnet
network's bridge (br0 is the "default" network, which needs no configuration):
  prepare   set the network up (bridge, address, DHCP/DNS, rules), so that
            libvirt can attach the domain's tap; a failure stops the start
  start     record libvirt's taps (<target dev=…/>) as the network's users, and
            put each on the bridge under the network's guard, isolate_guests and
            bandwidth; a failure stops the start (again at reconnect, when
            libvirtd restarts under running domains, where a failure is logged)
  release   forget the domain, and tear the network down with its last user
Other bridges and operations are left alone. The hook never calls libvirt.

Configuration: %[2]s (libvirt passes hooks no other environment).
State: /run/kvmnet/. Each action logs one line to stderr and syslog (tag kvmnet).
Exit status: 0 done or nothing to do, 1 failed, 2 bad arguments, XML or configuration.
`, hookProg, config.DefaultPath)
}
