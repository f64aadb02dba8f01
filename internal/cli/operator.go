package cli

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kvmnet/kvmnet/internal/config"
	"github.com/kvmnet/kvmnet/internal/ops"
	"github.com/kvmnet/kvmnet/internal/runlog"
	"github.com/kvmnet/kvmnet/internal/state"
	"github.com/kvmnet/kvmnet/internal/version"
)

// command is one `kvmnet COMMAND`: its help and what it does. run returns
// the exit code; its errors are logged by the caller.
type command struct {
	name, args, short string
	min, max          int                 // how many positional arguments it takes
	flags             []string            // boolean flags it takes, e.g. "--json"
	options           []string            // flags that take a value, "--host IP" or "--host=IP"
	help              string              // what `kvmnet COMMAND --help` adds to the synopsis
	check             func(c *call) error // what the counts above cannot say about its arguments
	run               func(c *call) (int, error)
}

// call is one run of a command: its positional arguments and flags.
type call struct {
	args    []string
	flags   map[string]bool
	options map[string]string
	out     io.Writer
	log     *runlog.Logger
}

// Commands lists the operator tool's commands, in the order --help shows them.
func commands() []command {
	return []command{
		{name: "status", args: "[NETWORK] [--json]", max: 1, short: "show every network kvmnet knows, or one", flags: []string{"--json"},
			help: statusHelp, run: runStatus},
		{name: "doctor", args: "[--fix]", short: "find what breaks VMs' networks; --fix repairs what kvmnet owns", flags: []string{"--fix"},
			help: doctorHelp, run: runDoctor},
		{name: "gc", args: "[NETWORK]", max: 1, short: "tear down networks no live VM uses (VMs killed without their downscript)",
			help: gcHelp, run: runGC},
		{name: "up", args: "NETWORK", min: 1, max: 1, short: "set a network up with no VM, and keep it up until `kvmnet down`",
			help: upHelp, run: runUp},
		{name: "down", args: "NETWORK|--all [--force]", max: 1, short: "tear a network down; --force detaches its VMs' taps first", flags: []string{"--all", "--force"},
			help: downHelp, check: checkDown, run: runDown},
		{name: "reload", args: "[NETWORK]", max: 1, short: "apply the edited configuration to the networks that are up, without touching their VMs",
			help: reloadHelp, run: runReload},
		{name: "link", args: "[NETWORK...] [--prune]", max: maxArgs, short: "make the kvmnet-HELPER@NETWORK links that pick a network in QEMU's script=", flags: []string{"--prune"},
			help: linkHelp, run: runLink},
		{name: "mac", args: "NAME [--host ADDRESS [--network NETWORK]]", min: 1, max: 1, options: []string{"--host", "--network"},
			short: "print a stable, locally administered MAC for the VM called NAME, or a static host's lines giving it ADDRESS",
			help:  macHelp, check: checkMAC, run: runMAC},
		{name: "version", short: "print kvmnet's version", run: runVersion},
	}
}

// Operator runs the kvmnet operator tool with args (os.Args) and returns its
// exit code.
func Operator(args []string) int {
	if len(args) < 2 {
		OperatorUsage(os.Stderr)
		return ExitUsage
	}
	switch args[1] {
	case "-h", "--help", "help":
		OperatorUsage(os.Stdout)
		return ExitOK
	case "--version", "-V":
		args[1] = "version"
	}
	for _, cmd := range commands() {
		if cmd.name == args[1] {
			return dispatch(cmd, args[2:])
		}
	}
	fmt.Fprintf(os.Stderr, "kvmnet: unknown command %q (see kvmnet --help)\n", args[1])
	return ExitUsage
}

// dispatch parses a command's arguments, runs it and maps its error to an exit code.
func dispatch(cmd command, args []string) int {
	c, err := parse(cmd, args)
	if errors.Is(err, errHelp) {
		CommandUsage(os.Stdout, cmd.name)
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvmnet %s: %s (see kvmnet %s --help)\n", cmd.name, err, cmd.name)
		return ExitUsage
	}
	c.log = runlog.Open("kvmnet " + cmd.name)
	defer c.log.Close()
	code, err := cmd.run(c)
	if err != nil {
		c.log.Error(err)
		if errors.Is(err, errUsage) {
			return ExitUsage
		}
		return ExitFail
	}
	return code
}

var errHelp = errors.New("help")

// parse splits args into positional arguments and the command's boolean
// flags, which may come anywhere ("status lab --json").
func parse(cmd command, args []string) (*call, error) {
	c := &call{flags: map[string]bool{}, options: map[string]string{}, out: os.Stdout}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			return nil, errHelp
		case strings.HasPrefix(a, "-") && a != "-":
			long, val, hasVal := strings.Cut("--"+strings.TrimLeft(a, "-"), "=")
			switch {
			case slices.Contains(cmd.options, long) && hasVal:
				c.options[long] = val
			case slices.Contains(cmd.options, long) && i+1 < len(args):
				i++
				c.options[long] = args[i]
			case slices.Contains(cmd.options, long):
				return nil, fmt.Errorf("flag %s wants a value", long)
			case !slices.Contains(cmd.flags, long) || hasVal:
				return nil, fmt.Errorf("unknown flag %s", a)
			default:
				c.flags[long] = true
			}
		default:
			c.args = append(c.args, a)
		}
	}
	if len(c.args) < cmd.min || len(c.args) > cmd.max {
		return nil, fmt.Errorf("want %s, got %d arguments", strings.TrimSpace(cmd.name+" "+cmd.args), len(c.args))
	}
	if cmd.check != nil {
		if err := cmd.check(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// host opens the caller's namespace's state directory and the configuration.
// A broken network's section leaves the others usable: status and doctor
// list it with its error (config.File.Broken).
func host() (ops.Host, error) {
	f, err := config.Load(config.Path())
	if f == nil {
		return ops.Host{}, usageError{err.Error()}
	}
	d, err := state.Open()
	if err != nil {
		return ops.Host{}, err
	}
	return ops.Host{Dir: d, File: f}, nil
}

// adminHost is host for a command that changes the host: it refuses a
// caller without CAP_NET_ADMIN before it reads anything.
func adminHost() (ops.Host, error) {
	if err := needNetAdmin(); err != nil {
		return ops.Host{}, err
	}
	return host()
}

// network checks a NETWORK argument; a bad name is the caller's to fix.
func network(name string) (string, error) {
	if err := config.CheckNetworkName(name); err != nil {
		return "", usageError{err.Error()}
	}
	return name, nil
}

func runStatus(c *call) (int, error) {
	h, err := host()
	if err != nil {
		return 0, err
	}
	names, err := h.Names()
	if err != nil {
		return 0, err
	}
	if len(c.args) == 1 {
		name, err := network(c.args[0])
		if err != nil {
			return 0, err
		}
		if !slices.Contains(names, name) {
			return 0, usagef("network %s: not configured in %s and not up", name, h.File.Path)
		}
		names = []string{name}
	}
	s, err := h.Status(names)
	if err != nil {
		return 0, err
	}
	code := ExitOK
	if s.AnyBroken() {
		code = ExitFail // a network shown cannot come up as the file stands
	}
	if c.flags["--json"] {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return code, enc.Encode(s)
	}
	return code, ops.WriteTable(c.out, s)
}

func runDoctor(c *call) (int, error) {
	h, err := host()
	if err != nil {
		return 0, err
	}
	found, err := h.Diagnose()
	if err != nil {
		return 0, err
	}
	if c.flags["--fix"] && fixable(found) {
		if err := needNetAdmin(); err != nil {
			return 0, err
		}
		start := time.Now()
		changes, ferr := ops.Fix(found)
		c.log.Info("fix", "changes", strings.Join(changes, ","), "took", since(start))
		if ferr != nil {
			c.log.Error(ferr)
		}
		if found, err = h.Diagnose(); err != nil {
			return 0, err
		}
	}
	for _, f := range found {
		fmt.Fprintln(c.out, f)
	}
	if !ops.Healthy(found) {
		return ExitFail, nil
	}
	if len(found) == 0 {
		fmt.Fprintln(c.out, "healthy: no findings; firewall: "+h.Firewall())
	}
	return ExitOK, nil
}

func fixable(fs []ops.Finding) bool {
	for _, f := range fs {
		if f.Fixable() {
			return true
		}
	}
	return false
}

func runGC(c *call) (int, error) {
	h, err := adminHost()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	var gone []ops.Reclaimed
	if len(c.args) == 1 {
		name, nerr := network(c.args[0])
		if nerr != nil {
			return 0, nerr
		}
		gone, err = h.GCNetwork(name)
	} else {
		gone, err = h.GC()
	}
	for _, r := range gone {
		kv := []string{"network", r.Network, "changes", strings.Join(r.Changes, ","), "took", since(start)}
		if r.Note != "" {
			kv = append(kv, "note", r.Note)
		}
		c.log.Info("gc", kv...)
	}
	return ExitOK, err
}

// changer returns the network named by arg and the host to change it on,
// after the checks every changing command makes.
func changer(arg string) (string, ops.Host, error) {
	name, err := network(arg)
	if err != nil {
		return "", ops.Host{}, err
	}
	h, err := adminHost()
	return name, h, err
}

func runUp(c *call) (int, error) {
	name, h, err := changer(c.args[0])
	if err != nil {
		return 0, err
	}
	start := time.Now()
	n, res, err := h.Up(name)
	if ce := (ops.ConfigError{}); errors.As(err, &ce) {
		return 0, usageError{err.Error()}
	}
	if err != nil {
		return 0, err
	}
	c.log.Info("up", "network", n.Name, "bridge", n.Bridge, "mode", string(n.Mode),
		"changes", strings.Join(res.Changes, ","), "took", since(start))
	for _, w := range res.Warnings {
		c.log.Warn(w, "network", n.Name)
	}
	return ExitOK, nil
}

func runReload(c *call) (int, error) {
	if err := needNetAdmin(); err != nil {
		return 0, err
	}
	name := ""
	if len(c.args) == 1 {
		var err error
		if name, err = network(c.args[0]); err != nil {
			return 0, err
		}
	}
	h, err := host()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	done, err := h.Reload(name)
	for _, r := range done {
		c.log.Info("reload", "network", r.Network, "changes", strings.Join(r.Changes, ","), "took", since(start))
	}
	if ce := (ops.ConfigError{}); errors.As(err, &ce) && len(done) == 0 {
		return 0, usageError{err.Error()}
	}
	return ExitOK, err
}

// checkDown wants a network or --all.
func checkDown(c *call) error {
	if c.flags["--all"] == (len(c.args) == 1) {
		return errors.New("want a NETWORK or --all, not both or neither")
	}
	return nil
}

func runDown(c *call) (int, error) {
	if c.flags["--all"] {
		return runDownAll(c)
	}
	name, h, err := changer(c.args[0])
	if err != nil {
		return 0, err
	}
	start := time.Now()
	res, err := h.Down(name, c.flags["--force"])
	if err != nil {
		return 0, err
	}
	c.log.Info("down", "network", name, "changes", strings.Join(res.Changes, ","), "took", since(start))
	return ExitOK, nil
}

func runDownAll(c *call) (int, error) {
	h, err := adminHost()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	gone, err := h.DownAll(c.flags["--force"])
	for _, r := range gone {
		c.log.Info("down", "network", r.Network, "changes", strings.Join(r.Changes, ","), "took", since(start))
	}
	return ExitOK, err
}

// maxArgs is "any number" of positional arguments.
const maxArgs = 1 << 16

// runLink makes the @NETWORK links of the named networks, or of every
// network the file defines, beside the helpers; --prune removes the others.
// It reads only the file: links are no namespace's state.
func runLink(c *call) (int, error) {
	f, err := config.Load(config.Path())
	if f == nil {
		return 0, usageError{err.Error()}
	}
	// A broken network's links are made too (a link is only its name), so
	// that fixing its section is all it takes; the error is still told.
	defined := slices.Concat(slices.Collect(maps.Keys(f.Networks)), f.BrokenNames())
	names := c.args
	for _, n := range names {
		if _, err := network(n); err != nil {
			return 0, err
		}
		if !slices.Contains(defined, n) && n != config.DefaultNetwork {
			return 0, usagef("network %s: not defined in %s", n, f.Path)
		}
	}
	if len(names) == 0 {
		names = slices.Sorted(slices.Values(defined))
	}
	dir, err := helperDir()
	if err != nil {
		return 0, err
	}
	l := ops.Links{Dir: dir, Helpers: helperNames()}
	changes, err := l.Make(names)
	if err == nil && c.flags["--prune"] {
		var gone []string
		keep := slices.Concat(names, defined)
		gone, err = l.Prune(keep)
		changes = append(changes, gone...)
	}
	if len(changes) > 0 {
		c.log.Info("link", "dir", dir, "changes", strings.Join(changes, ","))
	}
	if err == nil && f.Err() != nil {
		return 0, usageError{f.Err().Error()} // links made; the file still needs fixing
	}
	return ExitOK, err
}

// helperDir is where the helpers are: beside kvmnet (bin/ after make build),
// else ../libexec from it (/usr/bin/kvmnet, /usr/libexec/kvmnet-natup), the
// way the helpers find kvmnet.
func helperDir() (string, error) {
	exe, err := os.Executable()
	if err != nil && filepath.IsAbs(os.Args[0]) { // no /proc, as in a package's chroot
		exe, err = os.Args[0], nil
	}
	if err != nil {
		return "", fmt.Errorf("find the helpers: %w", err)
	}
	dirs := []string{filepath.Dir(exe), filepath.Join(filepath.Dir(exe), "..", "libexec")}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "kvmnet-"+NatUp.Name)); err == nil {
			return filepath.Clean(d), nil
		}
	}
	return "", fmt.Errorf("find the helpers: no kvmnet-%s in %s or %s", NatUp.Name, dirs[0], filepath.Clean(dirs[1]))
}

// helperNames are the installed names of the four helpers.
func helperNames() []string {
	var names []string
	for _, v := range []Verb{IfUp, IfDown, NatUp, NatDown} {
		names = append(names, "kvmnet-"+v.Name)
	}
	return names
}

func runMAC(c *call) (int, error) {
	if c.args[0] == "" {
		return 0, usagef("the VM's name is empty")
	}
	if _, ok := c.options["--host"]; ok {
		return runMACHost(c)
	}
	fmt.Fprintln(c.out, GuestMAC(c.args[0]))
	return ExitOK, nil
}

func runVersion(c *call) (int, error) {
	fmt.Fprintf(c.out, "kvmnet %s\n", version.Version)
	return ExitOK, nil
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Microsecond).String() }

// GuestMAC derives a stable MAC for a VM from its name: QEMU's 52:54:00 prefix
// (locally administered) and three bytes of the name's hash, so that scripts
// stop giving every guest QEMU's default 52:54:00:12:34:56.
func GuestMAC(name string) net.HardwareAddr {
	h := sha256.Sum256([]byte("kvmnet guest " + name))
	return net.HardwareAddr{0x52, 0x54, 0x00, h[0], h[1], h[2]}
}
