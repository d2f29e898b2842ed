#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 of the daemon in the middle of each live operation. Each round:
# the daemon serves, a guest-like writer writes clone c1 over NBD without
# pause (flushing every 8 writes and logging what is acknowledged), one
# command runs through the daemon (import, snapshot of c1, commit of c1, rm
# of a clone, gc, fsck, publish, pull) and the daemon is killed -9 at a
# random moment during it. Then, with no daemon: fsck is clean (after the
# recovery the first opener runs), c1 holds every acknowledged write, every
# name the model holds exports its bytes, and what the killed command made
# is either whole or absent. LIVEKILL_ROUNDS rounds per operation (default
# 2), seed LIVEKILL_SEED (printed).
. "$(dirname "$0")/../lib/functions.sh"
requires nbdcopy
WR="$ST_TESTS/tools/nbd-writer.py"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
S=$STELLAR_STORE
NB=2048 # blocks of 4 KiB: 8 MiB
ROUNDS=${LIVEKILL_ROUNDS:-2}
SEED=${LIVEKILL_SEED:-$(date +%s)}
echo "live kill -9: $ROUNDS rounds per operation, seed $SEED (LIVEKILL_SEED=$SEED to repeat)"
RANDOM=$SEED

st init >/dev/null
head -c $((NB * 4096)) /dev/urandom >"$TMP/base.raw"
st import -q "$TMP/base.raw" base
st clone base c1
cp "$TMP/base.raw" "$TMP/c1.now" # c1's content when no one writes it
mkdir "$TMP/want"
echo "base $TMP/base.raw" >"$TMP/model" # NAME FILE: names that must export FILE
head -c 2000000 /dev/urandom >"$TMP/pubsrc.raw"
st import -q "$TMP/pubsrc.raw" pubsrc
echo "pubsrc $TMP/pubsrc.raw" >>"$TMP/model"
st publish -q pubsrc "$TMP/pub0" >/dev/null

ops=(import snapshot commit rm gc fsck publish pull)
round=0
for r in $(seq "$ROUNDS"); do
        for op in "${ops[@]}"; do
                round=$((round + 1))
                wseed=$((SEED % 100000 + round))
                start_serve
                rm -f "$TMP/acks" "$TMP/stop"
                /usr/bin/python3 "$WR" write "$(U c1)" $wseed $NB "$TMP/acks" "$TMP/stop" 2>"$TMP/writer.err" &
                WP=$!
                for _ in $(seq 200); do [ -s "$TMP/acks" ] && break; sleep 0.02; done
                [ -s "$TMP/acks" ] || { cat "$TMP/writer.err" >&2; fail "round $round: the writer did not start"; }
                acked0=$(tail -1 "$TMP/acks" | cut -d' ' -f2)
                name="x$round"
                case $op in
                import) head -c $((1000000 + RANDOM * 60)) /dev/urandom >"$TMP/$name.raw"
                        set -- import -q "$TMP/$name.raw" "$name" ;;
                snapshot) set -- snapshot c1 "$name" ;;
                commit) set -- commit c1 ;;
                rm) st clone base "$name"; set -- rm "$name" ;;
                gc) set -- gc --quiet ;;
                fsck) set -- fsck --quiet ;;
                publish) set -- publish -q base "$TMP/pub-$name" ;;
                pull) set -- pull -q --as "$name" "$TMP/pub0" pubsrc ;;
                esac
                rc=0
                "$STELLAR" "$@" >/dev/null 2>"$TMP/op.err" &
                OP=$!
                sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
                kill -9 "$SERVE" 2>/dev/null || true
                wait "$SERVE" 2>/dev/null || true
                _cleanup_pids=()
                wait $OP || rc=$?
                wait $WP 2>/dev/null || true
                acked=$(tail -1 "$TMP/acks" | cut -d' ' -f2)
                echo "round $round: $op, killed (command exit $rc, writer acked op $acked)"

                # offline now: the first opener recovers
                st ls >/dev/null 2>"$TMP/ls.err" || { cat "$TMP/ls.err" >&2; fail "round $round ($op): ls after kill -9"; }
                fsck_clean
                st export c1 "$TMP/c1.out" >/dev/null
                /usr/bin/python3 "$WR" check "$TMP/c1.out" "$TMP/c1.now" $wseed $NB "$acked" $((acked + 16)) ||
                        fail "round $round ($op): c1 lost an acknowledged write (ack $acked)"
                while read -r n f; do
                        st export "$n" "$TMP/n.out" >/dev/null 2>"$TMP/n.err" ||
                                { cat "$TMP/n.err" >&2; fail "round $round ($op): $n lost"; }
                        cmp -s "$TMP/n.out" "$f" || fail "round $round ($op): $n changed"
                done <"$TMP/model"
                made=0
                [ -e "$S/refs/$name" ] && made=1
                case $op in
                import | pull)
                        src="$TMP/$name.raw"; [ $op = pull ] && src="$TMP/pubsrc.raw"
                        [ $rc != 0 ] || [ $made = 1 ] || fail "round $round: $op exited 0 but $name is missing"
                        if [ $made = 1 ]; then
                                st export "$name" "$TMP/n.out" >/dev/null && cmp -s "$TMP/n.out" "$src" ||
                                        fail "round $round: $op left $name half-made"
                                echo "$name $src" >>"$TMP/model"
                        fi ;;
                snapshot)
                        [ $rc != 0 ] || [ $made = 1 ] || fail "round $round: snapshot exited 0 but is missing"
                        if [ $made = 1 ]; then
                                st export "$name" "$TMP/n.out" >/dev/null
                                /usr/bin/python3 "$WR" check "$TMP/n.out" "$TMP/c1.now" $wseed $NB "$acked0" $((acked + 16)) ||
                                        fail "round $round: the snapshot lacks a write acknowledged before it"
                        fi ;;
                rm)
                        [ $rc != 0 ] || [ $made = 0 ] || fail "round $round: rm exited 0 but $name is there"
                        if [ $made = 1 ]; then
                                st export "$name" "$TMP/n.out" >/dev/null && cmp -s "$TMP/n.out" "$TMP/base.raw" ||
                                        fail "round $round: rm cut short left $name damaged"
                                st rm "$name"
                        fi ;;
                publish)
                        # published again, the tree is whole and pulls right
                        st publish -q base "$TMP/pub-$name" >/dev/null || fail "round $round: publish after kill -9"
                        st --store "$TMP/o-$name" init >/dev/null
                        st --store "$TMP/o-$name" pull -q "$TMP/pub-$name" base || fail "round $round: pull of the republished tree"
                        st --store "$TMP/o-$name" export base "$TMP/n.out" >/dev/null && cmp -s "$TMP/n.out" "$TMP/base.raw" ||
                                fail "round $round: the republished image"
                        rm -rf "$TMP/o-$name" "$TMP/pub-$name" ;;
                esac
                cp "$TMP/c1.out" "$TMP/c1.now"
                rm -f "$TMP/$name.raw.unused" "$TMP/n.out"
        done
done
fsck_clean
echo "OK: $round rounds"
