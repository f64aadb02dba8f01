// Command mangen writes kvmnet's man pages, gzipped, from the commands' own
// --help text, so that the pages never drift from the programs:
// kvmnet.1 and kvmnet-{ifup,ifdown,natup,natdown,bridge-helper,libvirt-hook}.8.
//
//	go run ./packaging/mangen -o DIR -version VERSION
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvmnet/kvmnet/internal/cli"
)

func main() {
	dir := flag.String("o", ".", "directory to write the pages to")
	ver := flag.String("version", "dev", "version named in the pages' footer")
	flag.Parse()
	if err := generate(*dir, *ver); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

// page is one man page: its name, section, one-line summary and body.
type page struct {
	name, section, summary string
	body                   func(w io.Writer)
}

func pages() []page {
	ps := []page{{name: "kvmnet", section: "1", summary: "show, check, repair and reclaim kvmnet's VM networks", body: operator}}
	for _, v := range []cli.Verb{cli.IfUp, cli.IfDown, cli.NatUp, cli.NatDown} {
		summary := "QEMU tap script: attach a VM's tap to its kvmnet network"
		if !v.Up {
			summary = "QEMU tap downscript: detach a VM's tap from its kvmnet network"
		}
		ps = append(ps, page{name: "kvmnet-" + v.Name, section: "8", summary: summary,
			body: func(w io.Writer) { cli.HelperUsage(w, v) }})
	}
	ps = append(ps, page{name: "kvmnet-bridge-helper", section: "8",
		summary: "QEMU bridge helper: ordinary users' VMs on kvmnet networks", body: cli.BridgeHelperUsage})
	return append(ps, page{name: "kvmnet-libvirt-hook", section: "8",
		summary: "libvirt qemu hook: kvmnet networks for domains on their bridges", body: cli.HookUsage})
}

// operator is `kvmnet --help` followed by every command's --help.
func operator(w io.Writer) {
	cli.OperatorUsage(w)
	for _, name := range cli.CommandNames() {
		fmt.Fprintln(w)
		cli.CommandUsage(w, name)
	}
}

func generate(dir, version string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	for _, p := range pages() {
		var help bytes.Buffer
		p.body(&help)
		path := filepath.Join(dir, p.name+"."+p.section+".gz")
		if err := writeGzip(path, roff(p, version, help.String())); err != nil {
			return err
		}
	}
	return nil
}

// roff wraps the help text in a man page: NAME, then the text as is, in a
// no-fill block, so that its own layout (aligned options, examples) survives.
func roff(p page, version, help string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s \"\" \"kvmnet %s\" \"kvmnet\"\n", strings.ToUpper(p.name), p.section, version)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n.SH DESCRIPTION\n.nf\n", p.name, p.summary)
	for _, l := range strings.Split(strings.TrimRight(help, "\n"), "\n") {
		l = strings.ReplaceAll(l, `\`, `\e`)
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		b.WriteString(l + "\n")
	}
	b.WriteString(".fi\n.SH SEE ALSO\n")
	var see []string
	for _, q := range pages() {
		if q.name != p.name {
			see = append(see, fmt.Sprintf(".BR %s (%s)", q.name, q.section))
		}
	}
	b.WriteString(strings.Join(see, " ,\n") + "\n")
	return b.String()
}

// writeGzip writes s gzipped with no name or time in the header, so that
// the package's bytes depend on its sources only.
func writeGzip(path, s string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := io.WriteString(zw, s); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
