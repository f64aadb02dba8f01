package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/kvmnet/kvmnet/internal/config"
)

// The operator tool's help, which is also its man page (packaging/mangen).

// OperatorUsage writes `kvmnet --help`.
func OperatorUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: kvmnet COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-29s %s\n", strings.TrimSpace(c.name+" "+c.args), c.short)
	}
	fmt.Fprintf(w, `
kvmnet acts on the network namespace it runs in. "kvmnet COMMAND --help" tells more.
Configuration: %s (or $%s when run by root). State: /run/kvmnet/.
Every command logs what it changes, a line per network, and its errors to stderr
and syslog (tag kvmnet).
Exit status: 0 done (doctor: healthy), 1 failed (doctor: a problem found), 2 bad
arguments, configuration or privilege.

The QEMU helpers are /usr/libexec/kvmnet-{ifup,ifdown,natup,natdown}; see their --help.
`, config.DefaultPath, config.EnvPath)
}

// CommandUsage writes `kvmnet NAME --help`.
func CommandUsage(w io.Writer, name string) {
	for _, c := range commands() {
		if c.name == name {
			fmt.Fprintf(w, "Usage: kvmnet %s\n\n%s.\n", strings.TrimSpace(c.name+" "+c.args), upperFirst(c.short))
			if c.help != "" {
				fmt.Fprint(w, "\n"+c.help)
			}
		}
	}
}

// CommandNames lists the commands, for the man page.
func CommandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// HelperUsage writes `kvmnet-NAME --help` of a helper, for its man page.
func HelperUsage(w io.Writer, v Verb) { helperUsage(w, "kvmnet-"+v.Name, v) }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

const statusHelp = `For each network (configured in the file, the built-in default, or up now):
its mode and whether it is up or pinned; the bridge, its MTU and whether kvmnet
made it ("made") or found it ("found"); the gateway address; ip_forward; how many
of kvmnet's rules are missing ("unknown (needs root)" when not run as root), and
their backend (nftables or iptables), or that
they are an older kvmnet's ("from kvmnet VERSION, replaced at next up or doctor
--fix", as doctor says: only what that release wrote otherwise differs); the
DHCP/DNS daemon and its leases; each port, whether kvmnet attached it for a VM,
and its MTU and MAC; its port forwards (of a network that is up, those its rules
hold) and whether their guests hold a lease; a network's VXLAN overlay: its link,
VNI, port, MTU and peers, each "heard" when a guest's frame came from it in the
last 5 minutes, else "silent" (with evpn, the remote VTEPs and the remote MACs
FRR's zebra installed); and a network's IPv6 side (address6): its
address, whether its daemon sends router advertisements, and IPv6 forwarding.
A network whose section of the file is wrong shows as "broken", with the
file's error (FILE:LINE: ...); status then exits 1.

  --json   print the same as JSON, schema 1 (stable: fields are only ever added):
           {"schema":1, "ip_forward":B, "bridge_nf_call_iptables":N,
            "networks":[{"name","configured","up","pinned","mode",
              "bridge":{"name","exists","owned","mtu","stp","forward_delay_ms"},
              "address":{"prefix","present","owned"},
              "forwarding":{"needed","held"},
              "rules":{"checked","owned","missing":[…],"firewall","older"},  (older: only then)
              "services":{"enabled","running","pid","leases":[{"ip","mac","hostname","expires","static"}]},
              "ports":[{"name","kind","kvmnet","attached","up","mtu","mac"}],
              "forwards":[{"proto","host_ip","port","to","leased"}],
              "vxlan":{"device","exists","owned","vni","port","mtu","evpn",
                       "peers":[{"address","flood","heard"}],
                       "macs":[{"mac","vtep"}]},   (only with an overlay; macs: evpn's)
              "ipv6":{"address":{"prefix","present","owned"},"ra",
                      "forwarding":{"needed","held"},"forwarding_on"},  (only with address6)
              "errors":[…], "broken",   (broken: the file's error, only when wrong)
              "teardown"}]}   ("in progress" or "cut short": a last down's teardown; else absent)
`

const doctorHelp = `Prints one line per finding: the problem, the evidence and the fix. Checks:
iptables missing (when the iptables backend is in use or picked); firewalld running in this namespace; per network that is up:
ip_forward off (NAT), the gateway address gone, with address6 the IPv6 gateway
address gone or IPv6 forwarding off (NAT), kvmnet's rules missing, the
DHCP/DNS daemon dead, FORWARD dropping bridged traffic while br_netfilter's
bridge-nf-call-iptables is 1 (only informational when kvmnet's jump comes
first), STP with a forward delay, a port whose MTU differs from its bridge's,
two ports with one MAC, QEMU's default MAC 52:54:00:12:34:56 in use, the
overlay's VXLAN link gone or its flood entries not the file's peers, a program
listening on a forwarded port (it gets none of the forwarded connections), a
forward whose guest holds no DHCP lease (informational); per
configured network: its section of the file wrong (the error, FILE:LINE; no
VM can start on it, the others can; one that is up is also checked as its
record says), a subnet overlapping a host
route (or, on its own bridge, kvmnet's gateway left with no record); with an
overlay, an underlay MTU that leaves guests less than 1280 bytes and a peer
with no route; with evpn, FRR's zebra or bgpd not running in the namespace,
zebra with EVPN off or not knowing the VNI (asked on its vty socket in
/var/run/frr), and the VNI with no remote VTEP; rules of another kvmnet
version (informational: the next up rewrites them); rules of networks that
are not up (a crash's, a downgrade's, shim accepts in iptables-legacy), an
inet kvmnet table left empty; a last down's teardown cut short, or
in progress (doctor waits up to 3 s for it, then says so as information).

  --fix   repair what kvmnet owns: the network's bridge, address, ip_forward,
          rules, daemon and VXLAN link (as a VM's up would), STP on a bridge kvmnet made,
          the MTU of taps kvmnet attached, rules of networks that are not up and an
          empty inet kvmnet; then
          check again.

Exit status: 0 when nothing but "info" lines remain, 1 otherwise.
`

const gcHelp = `A VM killed with SIGKILL runs no downscript. gc finds every network whose
VMs' taps are all gone and tears it down exactly as its last down would have:
the daemon, the rules, ip_forward, the address and the bridge, each only if
kvmnet made it. Networks pinned by "kvmnet up" stay. It takes each network's
lock, so it is safe at any time, e.g. from a systemd timer or a libvirt hook.
With NETWORK, only that network, and not while a libvirt domain is recorded on
it (the hook's release takes such a network down): its DHCP/DNS daemon runs
"kvmnet gc NETWORK" itself when the last tap on its bridge is deleted.
Without NETWORK it also removes rules no record accounts for (a crash's, or
those an older kvmnet's teardown left, and an empty inet kvmnet), waits for a last down's teardown in
progress, and finishes one cut short, saying which.
`

const upHelp = `Sets NETWORK up as the first VM's up would (bridge, address, ip_forward,
rules, DHCP/DNS), with no VM, and pins it: it stays up when its last VM leaves,
until "kvmnet down NETWORK". For a boot-time unit (kvmnet-up@NETWORK.service),
or to test a configuration. A network with no mode in the file comes up as nat,
as kvmnet-natup makes it. Running it on a network that is up heals what went
missing and pins it.
`

const reloadHelp = `Applies the configuration file, as edited since, to every network that is up
(or to NETWORK only), without touching the VMs on it: port forwards added,
changed and removed (no rule of an old one is left), and the DHCP/DNS daemon
restarted with its new static hosts, names and settings when they changed (its
leases are kept in its lease file and survive). The bridge, the address (and
so the subnet) and the mode cannot change under running VMs: reload refuses
and says so; take the VMs down or "kvmnet down NETWORK", then up again. A
network the file no longer defines is left as it is. The next VM's up notices
an edited file too, and applies it the same way.
`

const downHelp = `Tears NETWORK down, removing exactly what kvmnet made for it, and unpins it.
It refuses while VMs' taps are attached to it.

  --all     every network that is up in this namespace; while a VM uses any
            of them, it changes nothing and names them (the package runs it
            before its removal)
  --force   detach the VMs' taps first (their VMs lose the network)
`

const linkHelp = `QEMU's script= is a path with no arguments, so a helper's name picks the
network: kvmnet-natup@lab is a symlink to kvmnet-natup. link makes the four
helpers' links, kvmnet-{ifup,ifdown,natup,natdown}@NETWORK, beside the installed
helpers (/usr/libexec when kvmnet is /usr/bin/kvmnet) for each NETWORK named,
or for every network the configuration file defines. Run it as root after
adding a network to the file. Links already there are left alone; a file of
that name that is not such a link is an error, and nothing is made. A network
whose section of the file is wrong gets its links too, and link then prints
the file's error and exits 2.

  --prune   also remove the links of networks the file no longer defines
            (only symlinks to kvmnet's helpers are ever removed)
`

const macHelp = `The MAC is 52:54:00 (QEMU's prefix, locally administered, unicast) and three
bytes of a hash of NAME, so a VM keeps its MAC, and its DHCP lease, across
restarts, and two VMs do not share QEMU's default 52:54:00:12:34:56:

  -device virtio-net-pci,netdev=n0,mac=$(kvmnet mac web1)

  --host ADDRESS      print instead the lines of a static host that gives the VM
                      ADDRESS and its name in DNS, for the configuration file:
                      [[network.NETWORK.host]], its mac, ip and name. They are
                      checked against the file as it is (the subnet, other hosts).
  --network NETWORK   the network of --host (default: default)

  kvmnet mac web1 --host 192.168.100.10 | sudo tee -a /etc/kvmnet/kvmnet.toml
  sudo kvmnet reload
`
