#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Damage campaign. A store with images (two sharing chunks; frames as the
# import made them and as gc remade and merged them), a clone, a
# volume with flushed writes in its delta, a snapshot and a lazily pulled
# image is copied, then one file of one kind (packs, index, refs,
# manifests, delta journal, delta data, sources) is flipped, truncated,
# zeroed, swapped with another of its kind or deleted. Then:
#   - fsck reports it (errors or warnings), unless the damage changed no byte
#     that matters (see docs/damage.md for what each kind does);
#   - every command (ls, info, export of every name, clone, rm of another
#     name, gc, commit, pull) gives correct bytes or fails with a message
#     naming a file of the store (or the name at fault) -- never wrong bytes;
#   - the damaged file put back, every name still there exports to its
#     bytes: nothing intact, and no flushed write, was lost because of
#     damage elsewhere; and fsck is clean again after a gc.
# Rounds: DAMAGE_ROUNDS (default 70; CRASH_ROUNDS scales it down under ASan),
# seed DAMAGE_SEED (printed).
. "$(dirname "$0")/../lib/functions.sh"
requires python3 mkfs.ext4
W=${VOLUME_WRITER:?VOLUME_WRITER must point to tests/tools volume-writer}
ROUNDS=${DAMAGE_ROUNDS:-$((${CRASH_ROUNDS:-30} * 7 / 3))}
SEED=${DAMAGE_SEED:-$(date +%s)}
echo "damage campaign: $ROUNDS rounds, seed $SEED (DAMAGE_SEED=$SEED to repeat)"
RANDOM=$SEED

P="$TMP/pristine"
export STELLAR_STORE=$P
st init >/dev/null
make_ext4 "$TMP/a.img" 24M /etc/ssl /usr/share/common-licenses
cp "$TMP/a.img" "$TMP/b.img"
head -c 1500000 /dev/urandom | dd of="$TMP/b.img" bs=1M seek=5 conv=notrunc status=none
st import -q "$TMP/a.img" a
# a's frames remade at the cold level, neighbours merged (as gc and the idle
# compression leave them); b's new chunks stay in the import's frames: the
# packs hold both kinds
st gc --quiet
st import -q "$TMP/b.img" b
head -c 700000 /dev/urandom >"$TMP/junk.raw"
st import -q "$TMP/junk.raw" junk # rm'd in every round: "rm of another name"
st clone a ca
st clone a w
"$W" write "$P" w 3 48 >/dev/null # flushed writes, uncommitted
st clone b sv
"$W" write "$P" sv 4 16 snapshot >/dev/null # committed, then snapshot sv-snap
# lz: published from another store, pulled lazily (chunks fetched on read)
head -c 600000 /dev/urandom >"$TMP/r.raw"
cat "$TMP/r.raw" "$TMP/junk.raw" >"$TMP/lz.raw"
st --store "$TMP/other" init >/dev/null
st --store "$TMP/other" import -q "$TMP/lz.raw" r
st --store "$TMP/other" publish -q r "$TMP/pub" >/dev/null
st pull -q --lazy --as lz "$TMP/pub" r >/dev/null
[ -e "$P/sources/lz" ] || fail "setup: lz is not lazy"
names="a b ca w sv sv-snap lz"
mkdir "$TMP/want"
for n in $names; do [ $n = lz ] || st export "$n" "$TMP/want/$n" >/dev/null; done
cp "$TMP/lz.raw" "$TMP/want/lz" # lz stays lazy: its chunks are fetched in each round
fsck_clean

D="$TMP/work"
export STELLAR_STORE=$D
# files of a kind, one per line
files_of() {
        case $1 in
        pack) ls "$D"/packs/*.pack ;;
        index) echo "$D/index"; [ ! -e "$D/index.log" ] || echo "$D/index.log" ;;
        ref) ls "$D"/refs/* ;;
        manifest) ls "$D"/manifests/* ;;
        delta-map) ls "$D"/deltas/*.map ;;
        delta-data) ls "$D"/deltas/*.data ;;
        source) ls "$D"/sources/* ;;
        esac
}
kinds=(pack index ref manifest delta-map delta-data source)
actions=(flip flip flip truncate zero swap delete)

# An error message must name what is at fault: a store file or a name.
names_a_file() {
        grep -Eq "packs/|index|refs/|manifests/|deltas/|sources/|format|lock|no such|damaged|not a volume|pull|chunk|blob|$1" "$2"
}

n_reported=0
n_silent_ok=0
for round in $(seq "$ROUNDS"); do
        rm -rf "$D"
        cp -a "$P" "$D"
        kind=${kinds[$((RANDOM % ${#kinds[@]}))]}
        action=${actions[$((RANDOM % ${#actions[@]}))]}
        mapfile -t fl < <(files_of "$kind")
        [ ${#fl[@]} -gt 0 ] || continue
        fi_=$((RANDOM % ${#fl[@]}))
        f=${fl[$fi_]}
        rel=${f#"$D"/}
        size=$(stat -c %s "$f")
        cp -a "$f" "$TMP/orig"
        other=
        [ "$size" -gt 0 ] || [ $action = swap ] || action=delete
        case $action in
        flip)
                off=$(((RANDOM * 32768 + RANDOM) % (size > 0 ? size : 1)))
                python3 -c 'import sys; p,o=sys.argv[1],int(sys.argv[2]); b=bytearray(open(p,"rb").read()); b[o]^=1<<int(sys.argv[3]); open(p,"r+b").write(b)' "$f" "$off" $((RANDOM % 8))
                what="flip byte $off" ;;
        truncate)
                off=$(((RANDOM * 32768 + RANDOM) % (size > 0 ? size : 1)))
                truncate -s "$off" "$f"
                what="truncate to $off" ;;
        zero)
                off=$(((RANDOM * 32768 + RANDOM) % (size > 0 ? size : 1)))
                dd if=/dev/zero of="$f" bs=1 seek="$off" count=64 conv=notrunc status=none
                what="zero 64 bytes at $off" ;;
        swap)
                [ ${#fl[@]} -gt 1 ] || { action=delete; }
                if [ $action = swap ]; then
                        other=${fl[$(((fi_ + 1 + RANDOM % (${#fl[@]} - 1)) % ${#fl[@]}))]}
                        cp -a "$other" "$TMP/orig-other"
                        cp "$TMP/orig" "$TMP/swap"
                        cp "$other" "$f"
                        cp "$TMP/swap" "$other"
                        what="swap with ${other#"$D"/}"
                fi ;;
        esac
        if [ $action = delete ]; then
                rm -f "$f"
                what="delete"
        fi
        echo "round $round: $rel: $what"
        changed=1
        if [ -e "$f" ] && cmp -s "$f" "$TMP/orig"; then changed=0; fi

        # fsck first: later commands may repair what it should see
        rc=0
        st fsck >"$TMP/fsck" 2>&1 || rc=$?
        [ $rc -le 1 ] || { cat "$TMP/fsck" >&2; fail "round $round: fsck crashed ($rc)"; }
        warnings=$(grep -c '^warning' "$TMP/fsck" || true)
        if [ $rc = 1 ] || [ "$warnings" -gt 0 ]; then
                n_reported=$((n_reported + 1))
        elif [ $changed = 1 ]; then
                # Damage fsck cannot see must be harmless: every name reads right.
                n_silent_ok=$((n_silent_ok + 1))
                echo "  fsck saw nothing: checking that nothing changed"
        fi

        # every command: correct bytes or a clear error
        for n in $names; do
                rc=0
                st export "$n" "$TMP/got" >/dev/null 2>"$TMP/err" || rc=$?
                if [ $rc = 0 ]; then
                        # A journal cut short is what a crash during its last flushes
                        # leaves: the volume reads as of an earlier flush (docs/damage.md).
                        if [ "$kind $action" = "delta-map truncate" ] && [ "$rel" = "deltas/$n.map" ]; then
                                rm -f "$TMP/got"
                                continue
                        fi
                        cmp -s "$TMP/got" "$TMP/want/$n" || fail "round $round ($rel: $what): export $n gave wrong bytes"
                else
                        [ $rc = 1 ] || { cat "$TMP/err" >&2; fail "round $round: export $n crashed ($rc)"; }
                        names_a_file "$n" "$TMP/err" || { cat "$TMP/err" >&2; fail "round $round: export $n: unclear error"; }
                fi
                rm -f "$TMP/got"
                rc=0
                st info "$n" >/dev/null 2>"$TMP/err" || rc=$?
                [ $rc -le 1 ] || fail "round $round: info $n crashed ($rc)"
        done
        commit_rc=1
        rc=0
        st ls >/dev/null 2>"$TMP/err" || rc=$?
        [ $rc -le 1 ] || fail "round $round: ls crashed ($rc)"
        for cmd in "clone a cl" "rm junk" "gc --quiet" "commit w" "pull -q --as pb $TMP/pub r"; do
                rc=0
                # shellcheck disable=SC2086
                st $cmd >/dev/null 2>"$TMP/err" || rc=$?
                [ $rc -le 1 ] || { cat "$TMP/err" >&2; fail "round $round: $cmd crashed ($rc)"; }
                [ "$cmd" != "commit w" ] || commit_rc=$rc
                if [ $rc = 1 ]; then
                        names_a_file x "$TMP/err" || { cat "$TMP/err" >&2; fail "round $round: $cmd: unclear error"; }
                fi
        done
        [ ! -e "$D/refs/pb" ] || { st export pb "$TMP/got" >/dev/null 2>&1 && ! cmp -s "$TMP/got" "$TMP/lz.raw" && fail "round $round: pull gave wrong bytes"; } || true
        rm -f "$TMP/got"

        # the damaged file(s) put back: nothing else was lost
        if [ -e "$TMP/orig-other" ]; then cp -a "$TMP/orig-other" "$other"; rm -f "$TMP/orig-other"; fi
        mkdir -p "$(dirname "$f")"
        # (junk's ref is not: the round removed junk; nor a journal cut
        # short, which reads as a crash during its last flushes: commit may
        # have folded the earlier state and emptied the delta since)
        cut_journal=0
        # (one cut inside its header is damage that opens as such: put back)
        # (once a commit folded it: if the commit refused, the journal goes back)
        [ "$kind $action" = "delta-map truncate" ] && [ "$off" -ge 40 ] && [ "$commit_rc" = 0 ] &&
                cut_journal=1
        [ "$rel" = refs/junk ] || [ $cut_journal = 1 ] || cp -a "$TMP/orig" "$f"
        for n in $names; do
                rc=0
                st export "$n" "$TMP/got" >/dev/null 2>"$TMP/err" || rc=$?
                [ $rc = 0 ] || { cat "$TMP/err" >&2; fail "round $round ($rel: $what): $n lost after the file was put back"; }
                if [ $n = w ] && [ $cut_journal = 0 ] && ! cmp -s "$TMP/got" "$TMP/want/w"; then
                        fail "round $round ($rel: $what): w's flushed writes lost"
                fi
                [ $n = w ] || cmp -s "$TMP/got" "$TMP/want/$n" || fail "round $round ($rel: $what): $n changed"
                rm -f "$TMP/got"
        done
        st gc --quiet >/dev/null 2>&1 || true
        st fsck --quiet >"$TMP/fsck" 2>&1 || { cat "$TMP/fsck" >&2; fail "round $round ($rel: $what): fsck not clean after the file was put back"; }
        rm -f "$TMP/orig"
done
echo "OK: $ROUNDS rounds, $n_reported reported by fsck, $n_silent_ok changed nothing fsck could see"
