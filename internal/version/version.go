// Package version holds the version stamped in by the Makefile.
package version

// Version is set with -ldflags "-X github.com/kvmnet/kvmnet/internal/version.Version=…".
var Version = "dev"
