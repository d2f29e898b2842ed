#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A live host: the daemon owns the store and serves it while a writer (a
# guest-like client over NBD) writes clone c1 without pause. Meanwhile every
# other command runs from the command line, through the daemon's control
# socket: import of a new image, two snapshots of c1 (each holds every write
# acknowledged before it, checked against the writer's model), a commit of
# c2 (written by qemu-io), rm of an unattached clone, rm of the attached one
# (refused), gc, fsck, publish and a pull of what was published, ls, info,
# stats. Reads of every export stay right throughout. The control socket
# is 0600 and refuses other users.
. "$(dirname "$0")/../lib/functions.sh"
requires nbdcopy qemu-io setpriv
WR="$ST_TESTS/tools/nbd-writer.py"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
S=$STELLAR_STORE
NB=4096 # blocks of 4 KiB: 16 MiB

st init >/dev/null
head -c $((NB * 4096)) /dev/urandom >"$TMP/base.raw"
st import -q "$TMP/base.raw" base
st clone base c1
st clone base c2
st clone base c3
start_serve
[ "$(stat -c %a "$S/control.sock")" = 600 ] || fail "control socket mode is not 0600"

/usr/bin/python3 "$WR" write "$(U c1)" 7 $NB "$TMP/acks" "$TMP/stop" 2>"$TMP/writer.err" &
WP=$!
_cleanup_pids+=("$WP")
for _ in $(seq 200); do [ -s "$TMP/acks" ] && break; sleep 0.05; done
[ -s "$TMP/acks" ] || { cat "$TMP/writer.err" >&2; fail "the writer did not start"; }
last_ack() { tail -1 "$TMP/acks" | cut -d' ' -f2; }

# a new image while the guest writes
head -c 3000000 /dev/urandom >"$TMP/new.raw"
st import -q "$TMP/new.raw" new || fail "import while serving"
st export new "$TMP/new.out" && cmp -s "$TMP/new.out" "$TMP/new.raw" || fail "the new image"
nbdcopy "$(U new)" "$TMP/new.nbd" && cmp -s "$TMP/new.nbd" "$TMP/new.raw" || fail "the new image over NBD"

# two snapshots of the clone being written: each a point in time
for k in 1 2; do
        acked=$(last_ack)
        st snapshot c1 "c1@$k" || fail "snapshot $k of the attached volume"
        st export "c1@$k" "$TMP/snap$k.out"
        issued=$(($(last_ack) + 8))
        /usr/bin/python3 "$WR" check "$TMP/snap$k.out" "$TMP/base.raw" 7 $NB "$acked" "$issued" ||
                fail "snapshot $k lacks a write acknowledged before it (ack $acked)"
        sleep 0.3
done
[ "$(json_field "$(st info --json c1@1)" kind)" = snapshot ] || fail "c1@1 is not a snapshot"

# commit of an attached volume written by another client
qemu-io -f raw -c 'write -P 0x5a 1M 1M' -c flush "$(U c2)" >/dev/null || fail "qemu-io write"
st commit c2 >/dev/null || fail "commit of attached c2"
[ "$(json_field "$(st info --json c2)" delta_bytes)" = 0 ] || fail "c2 still has a delta after commit"
qemu-io -f raw -r -c 'read -P 0x5a 1M 1M' "$(U c2)" | grep -q "read 1048576" || fail "c2 after commit"

# rm: an unattached clone goes, the attached one is refused, naming who has it
st rm c3 || fail "rm of an unattached clone"
[ ! -e "$S/refs/c3" ] || fail "c3 still there"
if st rm c1 2>"$TMP/rm.err"; then fail "rm of the attached c1 succeeded"; fi
grep -q "open" "$TMP/rm.err" || { cat "$TMP/rm.err" >&2; fail "rm of c1: unclear refusal"; }

# gc, fsck, publish and pull, listings, all while c1 is written
st gc --quiet || fail "gc while serving"
st fsck --quiet || fail "fsck while serving"
nbdcopy "$(U base)" "$TMP/base.nbd" && cmp -s "$TMP/base.nbd" "$TMP/base.raw" || fail "base over NBD after gc"
st publish -q new "$TMP/pub" || fail "publish while serving"
st --store "$TMP/other" init >/dev/null
st --store "$TMP/other" pull -q "$TMP/pub" new || fail "pull of what was published"
st --store "$TMP/other" export new "$TMP/new2.out" && cmp -s "$TMP/new2.out" "$TMP/new.raw" ||
        fail "the pulled image"
st pull -q --as new-again "$TMP/pub" new || fail "pull into the served store"
nbdcopy "$(U new-again)" "$TMP/na.nbd" && cmp -s "$TMP/na.nbd" "$TMP/new.raw" || fail "pulled image over NBD"
st ls | grep -q '^c1@2 ' || fail "ls"
st stats --json >/dev/null || fail "stats"
# relative paths are the client's
(cd "$TMP" && st export new rel.out) && cmp -s "$TMP/rel.out" "$TMP/new.raw" || fail "export to a relative path"

# another user is refused (the socket is the store owner's)
if setpriv --reuid=65534 --regid=65534 --clear-groups "$STELLAR" --store "$S" ls >/dev/null 2>"$TMP/nobody.err"; then
        fail "another user's ls went through"
fi
grep -q "refuses this client" "$TMP/nobody.err" || { cat "$TMP/nobody.err" >&2; fail "no clear refusal for another user"; }

# stop the writer; c1 holds every acknowledged write
touch "$TMP/stop"
wait $WP || { cat "$TMP/writer.err" >&2; fail "the writer failed"; }
final=$(last_ack)
st export c1 "$TMP/c1.out"
/usr/bin/python3 "$WR" check "$TMP/c1.out" "$TMP/base.raw" 7 $NB "$final" "$final" || fail "c1 at the end"
kill "$SERVE"
wait "$SERVE" || true
[ ! -e "$S/control.sock" ] || fail "control socket left behind"
st export c1 "$TMP/c1b.out" && cmp -s "$TMP/c1.out" "$TMP/c1b.out" || fail "c1 after the daemon stopped"
fsck_clean
echo "OK: ack $final"
