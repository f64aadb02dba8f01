#!/bin/sh
# withsyslog.sh SOCKET SCRATCH CMD...: runs CMD in a private mount namespace
# (run it under `unshare -m --propagation private`) whose system log socket is
# SOCKET: /run becomes a tmpfs holding /run/syslog, which Go's log/syslog
# tries when there is no /dev/log, with kvmnet's /run/kvmnet moved back in.
# SCRATCH is an empty directory to carry /run/kvmnet across.
set -eu
sock=$1 scratch=$2
shift 2
mkdir -p /run/kvmnet
mount --bind /run/kvmnet "$scratch"
mount -t tmpfs tmpfs /run
mkdir /run/kvmnet
mount --move "$scratch" /run/kvmnet
touch /run/syslog
mount --bind "$sock" /run/syslog
exec "$@"
