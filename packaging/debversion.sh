#!/bin/sh
# debversion.sh VERSION: maps what `git describe --tags --always --dirty`
# prints to a valid Debian version that sorts the same way:
#   v1.2.3            -> 1.2.3
#   v1.2.3-4-gabc1234 -> 1.2.3+git4.abc1234   (after 1.2.3)
#   abc1234           -> 0.0.0~gitabc1234     (no tag yet: before any release)
#   …-dirty           -> …+dirty
# A Debian version without a revision may hold only [0-9A-Za-z.+~] and must
# start with a digit.
set -eu
printf '%s\n' "${1:-dev}" | sed -E '
  s/^v//
  s/-dirty$/+dirty/
  s/^([0-9]+(\.[0-9]+)*)-([0-9]+)-g([0-9a-f]+)/\1+git\3.\4/
  /^[0-9]+(\.[0-9]+)/!s/^/0.0.0~git/
  s/[^0-9A-Za-z.+~]/./g
'
