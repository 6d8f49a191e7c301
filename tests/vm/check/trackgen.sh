#!/usr/bin/env bash
# trackgen: track's checks for the generated tracer (profile ip): the
# clone's events are raw_rcv (and raw_rcv_skb).
CLONE_RE='^raw_rcv' exec "$(dirname "$0")/track.sh" "$@"
