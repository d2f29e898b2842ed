#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Concurrency campaign: random mixes of CLI processes (import, create, clone,
# export, ls, info, rm, gc) and a daemon that comes and goes (serve, with
# reads over NBD), all on one store, for CONC_SECONDS (default 60; fewer
# under ASan through CRASH_ROUNDS). Each worker keeps a model of the names
# it made. Every command that exited 0 did what it said: an import or clone
# is there with its bytes, a removed name is gone, an export gave the right
# bytes, ls listed what existed. A command that failed said why (the store
# was in use) and changed nothing. At the end every live name exports to its
# bytes and fsck is clean. Seed CONC_SEED (printed).
. "$(dirname "$0")/../lib/functions.sh"
requires nbdcopy python3
SECONDS_=${CONC_SECONDS:-$((${CRASH_ROUNDS:-30} * 2))}
SEED=${CONC_SEED:-$(date +%s)}
echo "concurrency campaign: $SECONDS_ s, seed $SEED (CONC_SEED=$SEED to repeat)"
S=$STELLAR_STORE
st init >/dev/null

# Source images: some share most of their chunks.
mkdir "$TMP/src"
head -c 3000000 /dev/urandom >"$TMP/src/0"
for i in 1 2 3; do
        cp "$TMP/src/0" "$TMP/src/$i"
        head -c 300000 /dev/urandom | dd of="$TMP/src/$i" bs=4096 seek=$((i * 97)) conv=notrunc status=none
done
head -c 1200000 /dev/urandom >"$TMP/src/4"
truncate -s 2M "$TMP/src/5" # all zeros
END=$(($(date +%s) + SECONDS_))

# A refusal is fine; anything else a failed command says is a defect.
refused() {
        grep -Eq "in use by|waiting for|needs it to itself|served by|the name is taken|already open|open for writing|Resource busy" "$1"
}

# Each command a worker runs, with its exit status and what it said.
logged() {
        local rc=0
        "$STELLAR" "$@" 2>"$err" || rc=$?
        echo "$rc $* :: $(tr '\n' ' ' <"$err")" >>"$TMP/cmdlog-$id"
        return $rc
}

# worker ID: its names are wID-N; its model is $TMP/model-ID (NAME SRC-FILE).
worker() {
        local id=$1 n=0 r
        RANDOM=$((SEED + id))
        local model="$TMP/model-$id"
        : >"$model"
        while [ "$(date +%s)" -lt "$END" ]; do
                mapfile -t live < <(cut -d' ' -f1 "$model")
                local op=$((RANDOM % 10)) name="w$id-$n" err="$TMP/err-$id"
                n=$((n + 1))
                case $op in
                0 | 1 | 2) # import
                        local src="$TMP/src/$((RANDOM % 6))"
                        if logged import -q "$src" "$name"; then
                                echo "$name $src" >>"$model"
                                echo "import ok" >>"$TMP/tally"
                        else
                                echo "import refused" >>"$TMP/tally"
                                refused "$err" || { cat "$err" >&2; echo "import $name failed" >"$TMP/fail-$id"; return; }
                                [ ! -e "$S/refs/$name" ] || { echo "failed import $name left a name" >"$TMP/fail-$id"; return; }
                        fi ;;
                3) # create
                        if logged create "$name" --size 1M; then
                                truncate -s 1M "$TMP/zero-$id"
                                cp "$TMP/zero-$id" "$TMP/want-$id-$name"
                                echo "$name $TMP/want-$id-$name" >>"$model"
                                echo "create ok" >>"$TMP/tally"
                        else
                                echo "create refused" >>"$TMP/tally"
                                refused "$err" || { cat "$err" >&2; echo "create $name failed" >"$TMP/fail-$id"; return; }
                        fi ;;
                4) # clone
                        [ ${#live[@]} -gt 0 ] || continue
                        local from=${live[$((RANDOM % ${#live[@]}))]}
                        local fsrc
                        fsrc=$(grep "^$from " "$model" | cut -d' ' -f2)
                        if logged clone "$from" "$name"; then
                                echo "$name $fsrc" >>"$model"
                                echo "clone ok" >>"$TMP/tally"
                        else
                                echo "clone refused" >>"$TMP/tally"
                                refused "$err" || { cat "$err" >&2; echo "clone $from $name failed" >"$TMP/fail-$id"; return; }
                        fi ;;
                5 | 6) # export
                        [ ${#live[@]} -gt 0 ] || continue
                        local x=${live[$((RANDOM % ${#live[@]}))]}
                        local xsrc
                        xsrc=$(grep "^$x " "$model" | cut -d' ' -f2)
                        if logged export "$x" "$TMP/out-$id"; then
                                cmp -s "$TMP/out-$id" "$xsrc" || { echo "export $x: wrong bytes" >"$TMP/fail-$id"; return; }
                                echo "export ok" >>"$TMP/tally"
                        else
                                echo "export refused" >>"$TMP/tally"
                                refused "$err" || { cat "$err" >&2; echo "export $x failed" >"$TMP/fail-$id"; return; }
                        fi
                        rm -f "$TMP/out-$id" ;;
                7) # ls and info: every name of ours is there
                        st ls >"$TMP/ls-$id" 2>"$err" || { cat "$err" >&2; echo "ls failed" >"$TMP/fail-$id"; return; }
                        for x in "${live[@]}"; do
                                grep -q "^$x " "$TMP/ls-$id" || { echo "ls lacks $x" >"$TMP/fail-$id"; return; }
                        done
                        [ ${#live[@]} -eq 0 ] || st info "${live[0]}" >/dev/null 2>"$err" ||
                                { cat "$err" >&2; echo "info ${live[0]} failed" >"$TMP/fail-$id"; return; } ;;
                8) # rm
                        [ ${#live[@]} -gt 0 ] || continue
                        local x=${live[$((RANDOM % ${#live[@]}))]}
                        if logged rm "$x"; then
                                grep -v "^$x " "$model" >"$model.new" || true
                                mv "$model.new" "$model"
                                [ ! -e "$S/refs/$x" ] || { echo "rm $x left it" >"$TMP/fail-$id"; return; }
                                echo "rm ok" >>"$TMP/tally"
                        else
                                echo "rm refused" >>"$TMP/tally"
                                refused "$err" || { cat "$err" >&2; echo "rm $x failed" >"$TMP/fail-$id"; return; }
                        fi ;;
                9) # gc
                        if logged gc --quiet; then
                                echo "gc ok" >>"$TMP/tally"
                        else
                                echo "gc refused" >>"$TMP/tally"
                                refused "$err" || { cat "$err" >&2; echo "gc failed" >"$TMP/fail-$id"; return; }
                        fi ;;
                esac
        done
        echo done >"$TMP/done-$id"
}

# The daemon comes and goes; while up, it reads a few names of worker 1.
server() {
        RANDOM=$((SEED + 99))
        local k=0
        while [ "$(date +%s)" -lt "$END" ]; do
                k=$((k + 1))
                local sock="$TMP/s$k.sock"
                "$STELLAR" serve --nbd "unix:$sock" 2>"$TMP/serve-$k.log" &
                local pid=$!
                for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
                if [ -S "$sock" ]; then
                        sleep "0.$((RANDOM % 9 + 1))"
                        mapfile -t live < <(cut -d' ' -f1 "$TMP/model-1" 2>/dev/null)
                        echo "serve ok" >>"$TMP/tally"
                        for x in "${live[@]:0:2}"; do
                                local xsrc
                                xsrc=$(grep "^$x " "$TMP/model-1" | cut -d' ' -f2) || continue
                                # the name may be removed meanwhile: only a read that works is checked
                                if nbdcopy "nbd+unix:///$x?socket=$sock" "$TMP/nbd.out" 2>/dev/null; then
                                        [ -e "$S/refs/$x" ] || continue
                                        cmp -s "$TMP/nbd.out" "$xsrc" || { echo "nbd read of $x: wrong bytes" >"$TMP/fail-s"; kill $pid; return; }
                                        echo "nbd-read ok" >>"$TMP/tally"
                                fi
                                rm -f "$TMP/nbd.out"
                        done
                fi
                kill $pid 2>/dev/null || true
                wait $pid 2>/dev/null || true
                sleep "0.$((RANDOM % 9 + 1))"
        done
        echo done >"$TMP/done-s"
}

worker 1 &
W1=$!
worker 2 &
W2=$!
worker 3 &
W3=$!
server &
SV=$!
wait $W1 $W2 $W3 $SV || true
for f in "$TMP"/fail-*; do [ -e "$f" ] && fail "$(cat "$f")"; done
for id in 1 2 3 s; do [ -e "$TMP/done-$id" ] || fail "worker $id did not finish"; done

fsck_clean
total=0
for id in 1 2 3; do
        while read -r name src; do
                total=$((total + 1))
                st export "$name" "$TMP/final.out" >/dev/null 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "$name (exited 0) is lost"; }
                cmp -s "$TMP/final.out" "$src" || fail "$name: wrong bytes at the end"
        done <"$TMP/model-$id"
done
# nothing else: every name in the store is in a model
for f in "$S"/refs/*; do
        [ -e "$f" ] || continue
        n=$(basename "$f")
        grep -qh "^$n " "$TMP"/model-[123] || {
                grep -h " $n\b" "$TMP"/cmdlog-* >&2 || true
                fail "$n exists but no command that exited 0 made it (or rm said it was removed)"
        }
done
st gc --quiet
fsck_clean
echo "commands: $(sort "$TMP/tally" | uniq -c | awk '{printf "%s %s %s, ", $2, $3, $1}')"
grep -q "import ok" "$TMP/tally" && grep -q "rm ok" "$TMP/tally" && grep -q "gc ok" "$TMP/tally" &&
        grep -q "nbd-read ok" "$TMP/tally" || fail "the mix did not exercise every command"
echo "OK: $total names checked"
