package netsvc

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDaemonLinksNoTLS: the daemon's binary is most of its resident memory
// (its text and rodata are mapped nearly whole), so it links no DNS library
// that brings TLS, X.509 and public-key crypto along: miekg/dns did, a
// megabyte of code for DNS-over-TLS and DNSSEC the forwarder never uses.
func TestDaemonLinksNoTLS(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/kvmnet-netsvc").Output()
	if err != nil {
		t.Fatalf("go list -deps kvmnet-netsvc: %v", err)
	}
	banned := []string{"github.com/miekg/dns", "crypto/tls", "crypto/x509", "crypto/ecdsa", "crypto/rsa"}
	for _, p := range strings.Fields(string(out)) {
		for _, b := range banned {
			if p == b || strings.HasPrefix(p, b+"/") {
				t.Errorf("kvmnet-netsvc links %s", p)
			}
		}
	}
}
