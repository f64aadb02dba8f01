#!/bin/sh
# withsyslog.sh SOCKET SCRATCH CMD...: runs CMD in a private mount namespace
# (run it under `unshare -m --propagation private`) whose system log socket,
# /dev/log, is SOCKET: /dev becomes a tmpfs holding /dev/null and /dev/log
# only, so the machine's own /dev is never written. SCRATCH is an empty
# directory to carry /dev/null across.
set -eu
sock=$1 scratch=$2
shift 2
: >"$scratch/null"
mount --bind /dev/null "$scratch/null"
mount -t tmpfs tmpfs /dev
: >/dev/null
mount --bind "$scratch/null" /dev/null
: >/dev/log
mount --bind "$sock" /dev/log
exec "$@"
