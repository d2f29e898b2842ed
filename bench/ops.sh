#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Operations cost what they change (issue "One daemon owns the store"): on a
# store holding one dense image (NIMG MiB of incompressible data, every block
# data: 1024 MiB, --quick 128), with K clones of it (10, 100, 1000; --quick
# 10, 100):
#   commit  write 64 scattered 4 KiB blocks into volume v (the test tool
#           volume-writer, through the library), then `stellar commit v`:
#           wall time of the commit. Peer: `qemu-img commit` of a qcow2
#           overlay holding the same 64 blocks into its qcow2 backing file
#           (itself over the raw image), the nearest thing a qcow2 user does.
#   clone   `stellar clone IMG cN` against `qemu-img create -f qcow2 -b`.
#   ls      `stellar ls` of the whole store (K + 2 names) against
#           `qemu-img info` of one overlay (for scale only).
# With STELLAR_OLD set (an older stellar binary), its commit, clone and ls
# run interleaved on a copy of the same store: before against after.
# Interleaved runs (alternating who goes first), medians.
#
# Usage: bench/ops.sh [--quick]
# Summary line (stdout): ops: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool qemu-img qemu-utils
VW=$(dirname "$(dirname "$STELLAR")")/tests/volume-writer
[ -x "$VW" ] || ninja -C "$(dirname "$(dirname "$STELLAR")")" tests/volume-writer >&2
OLD=${STELLAR_OLD:-}
NIMG=$(runs 1024 128)
RUNS=$(runs 7 3)
if [ "$QUICK" = 1 ]; then CLONES="10 100"; else CLONES="10 100 1000"; fi
W=$WORK/ops
rm -rf "$W"
mkdir -p "$W"
img=$(random_file "$NIMG")
warm "$img"

ms() { awk -v t="$1" 'BEGIN { printf "%.2f", t * 1000 }'; }
wall() { local t; timed t "$@"; echo "${t%% *}"; }

# one store per side (new, old): the image and K clones
make_store() { # BIN DIR
        "$1" --store "$2" init >/dev/null
        "$1" --store "$2" import -q "$img" img
        "$1" --store "$2" clone img v
}
add_clones() { # BIN DIR FROM TO
        for i in $(seq "$3" "$4"); do "$1" --store "$2" clone img "c$i"; done
}
log "ops: importing ${NIMG} MiB..."
make_store "$STELLAR" "$W/new"
[ -z "$OLD" ] || make_store "$OLD" "$W/old"
qemu-img create -q -f qcow2 -b "$img" -F raw "$W/base.qcow2"
chunks=$("$STELLAR" --store "$W/new" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["chunks"])')

summary="ops: image_mib=$NIMG chunks=$chunks runs=$RUNS"
have=0
seed=1
for k in $CLONES; do
        log "ops: $k clones"
        add_clones "$STELLAR" "$W/new" $((have + 1)) "$k"
        [ -z "$OLD" ] || add_clones "$OLD" "$W/old" $((have + 1)) "$k"
        have=$k
        c_new=() c_old=() c_q=() cl_new=() cl_old=() cl_q=() ls_new=() ls_old=()
        for r in $(seq "$RUNS"); do
                seed=$((seed + 1))
                # commit: 64 blocks written, then committed
                "$VW" write "$W/new" v "$seed" 64 >/dev/null
                [ -z "$OLD" ] || "$VW" write "$W/old" v "$seed" 64 >/dev/null
                qemu-img create -q -f qcow2 -b "$W/base.qcow2" -F qcow2 "$W/ovl.qcow2"
                for b in $(seq 64); do
                        echo "write -P $(((seed + b) % 250 + 1)) $(((seed * 7919 + b * 104729) % (NIMG * 256) * 4096)) 4k"
                done >"$W/qio.cmds"
                qemu-io -f qcow2 "$W/ovl.qcow2" <"$W/qio.cmds" >/dev/null
                order="new old q"
                [ $((r % 2)) = 0 ] && order="q old new"
                for side in $order; do
                        case $side in
                        new) c_new+=("$(wall "$STELLAR" --store "$W/new" commit v)") ;;
                        old) [ -z "$OLD" ] || c_old+=("$(wall "$OLD" --store "$W/old" commit v)") ;;
                        q) c_q+=("$(wall qemu-img commit -q "$W/ovl.qcow2")") ;;
                        esac
                done
                rm -f "$W/ovl.qcow2"
                for side in $order; do
                        case $side in
                        new) cl_new+=("$(wall "$STELLAR" --store "$W/new" clone img "x$r")")
                             "$STELLAR" --store "$W/new" rm "x$r" ;;
                        old) [ -z "$OLD" ] || { cl_old+=("$(wall "$OLD" --store "$W/old" clone img "x$r")")
                                                "$OLD" --store "$W/old" rm "x$r"; } ;;
                        q) cl_q+=("$(wall qemu-img create -q -f qcow2 -b "$img" -F raw "$W/x.qcow2")")
                           rm -f "$W/x.qcow2" ;;
                        esac
                done
                ls_new+=("$(wall "$STELLAR" --store "$W/new" ls)")
                [ -z "$OLD" ] || ls_old+=("$(wall "$OLD" --store "$W/old" ls)")
        done
        summary+=" commit_ms_$k=$(ms "$(median "${c_new[@]}")") qcommit_ms_$k=$(ms "$(median "${c_q[@]}")")"
        summary+=" clone_ms_$k=$(ms "$(median "${cl_new[@]}")") qcreate_ms_$k=$(ms "$(median "${cl_q[@]}")")"
        summary+=" ls_ms_$k=$(ms "$(median "${ls_new[@]}")")"
        if [ -n "$OLD" ]; then
                summary+=" old_commit_ms_$k=$(ms "$(median "${c_old[@]}")")"
                summary+=" old_clone_ms_$k=$(ms "$(median "${cl_old[@]}")") old_ls_ms_$k=$(ms "$(median "${ls_old[@]}")")"
        fi
done
"$STELLAR" --store "$W/new" fsck >&2
summary+=" index_bytes=$(fsize "$W/new/index") log_bytes=$(fsize "$W/new/index.log")"
rm -rf "$W"
echo "$summary"
