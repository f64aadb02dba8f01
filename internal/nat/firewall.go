package nat

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/kvmnet/kvmnet/internal/nslock"
	"github.com/kvmnet/kvmnet/internal/safefile"
)

// ErrNoIptables means the iptables binaries are not in the system's directories.
var ErrNoIptables = errors.New("iptables not found in /usr/sbin, /sbin, /usr/bin or /bin (install the iptables package)")

// toolDirs are where New looks for iptables: the system's own directories,
// never PATH, so that a caller's environment cannot make a privileged helper
// (setuid, file capabilities, or root run from a user's shell) run its program.
var toolDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// Firewall applies networks' rules with the system's iptables binaries.
// It holds no state between calls; callers serialise Ensure and Remove of one
// network across processes (a lock file), since two concurrent first uses
// would both see a jump missing and both insert it. The next Ensure heals that.
type Firewall struct {
	iptables, save, restore string // absolute paths
	nft                     bool
	dirs                    []string  // where the tools were looked for
	v6                      *Firewall // ip6tables beside them, once a network with IPv6 asked (see six)
	family6                 bool      // this one drives ip6tables
}

// New finds iptables, iptables-save and iptables-restore in /usr/sbin, /sbin,
// /usr/bin or /bin (never PATH) and reads, from the symlinks alone, which
// backend they drive. An error wraps ErrNoIptables when one is missing. It
// also fails when they drive different backends: a save of one would never
// show the rules a restore of the other makes.
func New() (*Firewall, error) { return newIn(toolDirs) }

// newIn is New looking in dirs.
func newIn(dirs []string) (*Firewall, error) {
	f := &Firewall{dirs: dirs}
	for _, b := range []struct {
		name string
		path *string
	}{{"iptables", &f.iptables}, {"iptables-save", &f.save}, {"iptables-restore", &f.restore}} {
		p, err := FindTool(dirs, b.name)
		switch {
		case errors.Is(err, ErrNoIptables) && b.name == "iptables":
			return nil, err
		case errors.Is(err, ErrNoIptables):
			return nil, fmt.Errorf("%s missing beside %s: %w", b.name, f.iptables, err)
		case err != nil:
			return nil, err
		}
		*b.path = p
	}
	f.nft = isNFT(f.iptables)
	for _, p := range []string{f.save, f.restore} {
		if isNFT(p) != f.nft {
			return nil, fmt.Errorf("%s and %s drive different backends (nf_tables and legacy); run update-alternatives --config iptables", f.iptables, p)
		}
	}
	return f, nil
}

// ToolDirs returns where New looks for the iptables programs.
func ToolDirs() []string { return slices.Clone(toolDirs) }

// FindTool returns the first dirs/name that exists. It returns the name as
// found, not the file its links lead to: iptables is one multi-call binary
// that acts by the name it is run as. The file it leads to must be root's and
// writable by no one else; one that is not is an error, not skipped.
func FindTool(dirs []string, name string) (string, error) {
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		err := safefile.Executable(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return p, nil
	}
	return "", ErrNoIptables
}

// NFT reports whether iptables is the nf_tables backend (iptables-nft), the
// only one whose changes Generation sees.
func (f *Firewall) NFT() bool { return f.nft }

// isNFT reports whether path is the nft backend of iptables (iptables-nft).
func isNFT(path string) bool { return IptablesVariant(path) == "nft" }

// IptablesVariant follows the symlink chain of path (iptables ->
// /etc/alternatives/iptables -> iptables-nft -> xtables-nft-multi) and
// returns the backend the first link naming one names: "nft", "legacy", or
// "" when none does. It does not exec: `iptables --version` would cost ~3 ms.
func IptablesVariant(path string) string {
	for range 16 {
		switch base := filepath.Base(path); {
		case strings.Contains(base, "-nft"):
			return "nft"
		case strings.Contains(base, "-legacy"):
			return "legacy"
		}
		next, err := os.Readlink(path)
		if err != nil {
			return ""
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(path), next)
		}
		path = next
	}
	return ""
}

// Result is what EnsureGen did.
type Result struct {
	// Changed reports that a batch was applied.
	Changed bool
	// Gen is the nf_tables generation at which all of n's rules were present.
	// Record it only when GenOK: then, as long as Generation() still returns
	// Gen, nothing in any table has changed and Ensure would change nothing.
	Gen   uint32
	GenOK bool
	from  uint32 // the generation the last plan started from
}

// Ensure makes the live rules contain exactly n's rules, applying only what is
// missing or wrong, and reports whether it changed anything. It costs one
// `iptables-save` and, when something is missing, one
// `iptables-restore --noflush --wait`; when all is in place it execs nothing more.
//
// A batch that fails leaves the table it failed in as it was, but not the
// tables before it: iptables-restore commits each table on its own. nat goes
// first, so the likely failure (no nf_nat) leaves nothing; a failure in filter
// after it leaves a masquerade chain that routes nothing, which the next Ensure
// completes or Remove removes.
func (f *Firewall) Ensure(n Network) (changed bool, err error) {
	r, err := f.EnsureGen(n)
	return r.Changed, err
}

// EnsureGen is Ensure that also returns the nf_tables generation to record for
// a warm run (see Unchanged). One batch bumps the generation once per table it
// writes to, so when the generation after it is exactly that much above the
// one read before the save, no other program changed a rule in between and the
// new generation is known to hold n's rules.
//
// Otherwise (always on the legacy backend) another kvmnet network's Ensure or
// Remove may have run between our save and our restore (each network has its
// own lock), so that a position in our batch was stale and FORWARD's order is
// off, or our batch failed on a jump that network removed first: EnsureGen then
// reads the rules again and repairs what it finds, a bounded number of times.
// TestForwardOrderConcurrent fails without this.
func (f *Firewall) EnsureGen(n Network) (Result, error) {
	if err := n.Validate(); err != nil {
		return Result{}, err
	}
	r, err := f.converge("rules of network "+n.Name, func(live ruleset) batch { return planEnsure(live, n) })
	if err != nil || !n.Gateway6.IsValid() {
		return r, err
	}
	g, err := f.six()
	if err != nil {
		return Result{}, err
	}
	n6 := n.ipv6()
	r6, err := g.converge("IPv6 rules of network "+n.Name, func(live ruleset) batch { return planEnsure(live, n6) })
	if err != nil {
		return Result{}, err
	}
	// The generation is one for both families: it vouches for both only when
	// nothing committed between the IPv4 rules and the IPv6 ones.
	return Result{Changed: r.Changed || r6.Changed, Gen: r6.Gen, GenOK: r.GenOK && r6.GenOK && r6.from == r.Gen}, nil
}

// writerLock serialises kvmnet's iptables writers of one network namespace.
const writerLock = "@kvmnet-iptables"

// converge applies the batch plan makes from a fresh `iptables-save` until
// plan wants none, and returns the generation to record (see EnsureGen). It
// applies again only when the rules moved under it: a generation that is not
// exactly its own commits ahead (always, on the legacy backend), or a batch
// that failed while a new save differs from the one it was planned from.
func (f *Firewall) converge(what string, plan func(live ruleset) batch) (Result, error) {
	// Each network has its own lock, and two networks' batches both move
	// FORWARD's jumps: without one writer at a time in the namespace, one
	// batch fails on a jump the other just moved (the retries below then
	// only narrow the race).
	unlock, err := nslock.Lock(writerLock)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", what, err)
	}
	defer unlock()
	changed, last := false, ""
	for try := 1; ; try++ {
		gen, genErr := f.generation()
		live, err := f.saveAll()
		if err != nil {
			return Result{}, err
		}
		b := plan(live)
		if b.empty() {
			return Result{Changed: changed, Gen: gen, GenOK: genErr == nil, from: gen}, nil
		}
		if b.String() == last {
			// Our own batch again: the rules read back differ from what we
			// wrote in a way only this iptables knows (a spelling), not
			// because anyone moved them. Applying it again would change nothing.
			return Result{Changed: true}, nil
		}
		if try > ensureTries {
			return Result{}, fmt.Errorf("%s: still changing after %d batches (another program rewriting them?)", what, ensureTries)
		}
		if err := f.apply(b); err != nil {
			if try < ensureTries {
				if now, serr := f.saveAll(); serr == nil && !reflect.DeepEqual(now, live) {
					continue // e.g. a concurrent Remove took a jump this batch meant to move
				}
			}
			return Result{}, err
		}
		changed, last = true, b.String()
		after, err := f.generation()
		if genErr == nil && err == nil && after == gen+uint32(b.commits()) {
			return Result{Changed: true, Gen: after, GenOK: true, from: gen}, nil
		}
	}
}

// ensureTries bounds converge's batches: one, and more only while other
// kvmnet runs change the rules at the same moment.
const ensureTries = 4

// Unchanged reports whether the nf_tables generation still equals gen, a
// Result.Gen recorded after an EnsureGen, so that a warm run may skip even the
// iptables-save. It is always false on the legacy backend, whose changes do
// not move the generation. The generation restarts at boot and differs per
// network namespace: keep gen under /run.
func (f *Firewall) Unchanged(gen uint32) bool {
	if !f.nft {
		return false
	}
	cur, err := Generation()
	return err == nil && cur == gen
}

// Remove deletes n's jumps and chains and nothing else; a network already gone
// is not an error. Only n.Name is used, so a network whose mode changed since
// Ensure loses all its chains. It costs one `iptables-save` and, when there is
// something to remove, one `iptables-restore --noflush --wait` (and, as for
// EnsureGen, a second save on the legacy backend or when another kvmnet run
// changed the rules meanwhile).
//
// That restore is slow for a reason no batching helps: after a transaction
// that deletes anything, closing the nfnetlink socket waits until the kernel
// has freed the deleted objects, one RCU grace period (~10-13 ms here) per
// table committed. Measured: ~18 ms for a filter-only network, ~29 ms for NAT.
// A cold Ensure only adds and pays none of it; an Ensure that rewrites a
// drifted chain pays it too.
func (f *Firewall) Remove(n Network) error {
	if err := CheckName(n.Name); err != nil {
		return err
	}
	dropAll := func(live ruleset) batch {
		b := batch{}
		for _, c := range ownedChains(n.Name) {
			b.drop(live, c)
		}
		return b
	}
	_, err := f.converge("remove rules of network "+n.Name, dropAll)
	if err != nil || !n.Gateway6.IsValid() {
		return err
	}
	g, err := f.six()
	if err != nil {
		return err
	}
	_, err = g.converge("remove IPv6 rules of network "+n.Name, dropAll)
	return err
}

// Check returns, as iptables arguments that would add them (`-t filter -A
// KVMNET-FWD-x ...`), the rules of n that are absent now; nil means all are in
// place. It reads the same `iptables-save` Ensure does, so that it agrees with
// Ensure on what counts as present. Rules present in the wrong order within a
// chain are not reported, though Ensure would rewrite their chain; n's jumps
// in FORWARD are reported when present out of the order that keeps networks
// apart (all guard jumps, then all accept jumps, before any other rule).
func (f *Firewall) Check(n Network) (missing []string, err error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	missing, err = f.check(n, "")
	if err != nil || !n.Gateway6.IsValid() {
		return missing, err
	}
	g, err := f.six()
	if err != nil {
		return nil, err
	}
	more, err := g.check(n.ipv6(), "ip6tables ")
	return append(missing, more...), err
}

// check is Check of one family, each missing rule led by prefix.
func (f *Firewall) check(n Network, prefix string) (missing []string, err error) {
	live, err := f.saveAll()
	if err != nil {
		return nil, err
	}
	fwd, _ := live.chain(tableFilter, "FORWARD")
	fwd = slices.Clone(fwd)
	inOrder := ordered(fwd)
	for _, c := range chains(n) {
		have, _ := live.chain(c.table, c.name)
		for _, r := range c.rules {
			if !contains(have, r) {
				missing = append(missing, prefix+"-t "+c.table+" "+line("-A", c.name, r))
			}
		}
		parent, _ := live.chain(c.table, c.parent)
		j, pos := jump(n, c), 1
		if c.parent == "FORWARD" {
			pos = place(fwd, tierOf(j))
		}
		if !contains(parent, j) || (c.parent == "FORWARD" && !inOrder) {
			if c.parent == "FORWARD" && !contains(parent, j) {
				fwd = slices.Insert(fwd, pos-1, j) // so that the next jump's place counts it
			}
			missing = append(missing, prefix+"-t "+c.table+" "+line("-I", c.parent+" "+strconv.Itoa(pos), j))
		}
	}
	return missing, nil
}

// contains reports whether rules holds r in any spelling.
func contains(rules [][]string, r []string) bool {
	k := ruleKey(r)
	for _, h := range rules {
		if ruleKey(h) == k {
			return true
		}
	}
	return false
}

// generation is Generation on the nf_tables backend and an error elsewhere.
func (f *Firewall) generation() (uint32, error) {
	if !f.nft {
		return 0, errors.New("legacy iptables has no nf_tables generation")
	}
	return Generation()
}

// Command is exec.Command for an iptables program that dies with its caller:
// a helper killed during an up (QEMU's timeout, the OOM killer) must not leave
// an iptables-restore behind that commits its batch after the next run has
// already cleaned up, with no record of it. The parent-death signal follows
// the thread that started the child, which waits for it on that thread.
func Command(path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// saveAll equals `iptables-save`: every table, parsed.
func (f *Firewall) saveAll() (ruleset, error) {
	var out, stderr bytes.Buffer
	cmd := Command(f.save)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", filepath.Base(f.save), err, firstLine(stderr.Bytes()))
	}
	return parseSave(out.String())
}

// apply equals `iptables-restore --noflush --wait < batch`: --noflush keeps
// every other rule, --wait queues behind another program holding the xtables
// lock instead of failing.
func (f *Firewall) apply(b batch) error {
	text := b.String()
	var stderr bytes.Buffer
	cmd := Command(f.restore, "--noflush", "--wait")
	cmd.Stdin, cmd.Stderr = strings.NewReader(text), &stderr
	if err := cmd.Run(); err != nil {
		msg := firstLine(stderr.Bytes())
		if l := failedLine(msg, text); l != "" {
			msg += " (" + l + ")"
		}
		return fmt.Errorf("%s: %w: %s", filepath.Base(f.restore), err, msg)
	}
	return nil
}

// banner matches the "iptables-restore v1.8.9 (nf_tables): " line the nft
// backend prints before the real message.
var banner = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\S+ v[0-9.]+ \([^)]*\):$`) })

// firstLine returns the first line of a tool's stderr that says something.
func firstLine(stderr []byte) string {
	for l := range strings.SplitSeq(string(stderr), "\n") {
		if l = strings.TrimSpace(l); l != "" && !banner().MatchString(l) {
			return l
		}
	}
	return "no message"
}

var lineNo = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`line (\d+)`) })

// failedLine returns the batch line an iptables-restore message ("line 4:
// CHAIN_DEL failed ...") points at, or "".
func failedLine(msg, text string) string {
	m := lineNo().FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(text, "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return lines[n-1]
}
