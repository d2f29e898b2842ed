#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A throw-away S3 server for tests and benchmarks: a one-node Ceph cluster
# (one mon, one OSD on memstore, radosgw with the beast frontend), all on
# 127.0.0.1, all state under DIR, nothing installed (scripts/setup.sh does it).
#
#   s3-server.sh start DIR   bring it up in the background, print the
#                            "export ..." lines (also in DIR/env), exit
#   s3-server.sh stop DIR    stop exactly the processes recorded in DIR/pids
#   s3-server.sh run DIR     the same in the foreground: up, env printed, then
#                            wait; SIGTERM/SIGINT stop the daemons, reap them
#                            and exit 0
#
# The daemons run in the foreground (-f, never Ceph's own daemonising) as
# children of one keeper process, which reaps them: PID 1 here reaps orphans
# only lazily, if at all. `start` detaches the keeper (setsid), so the keeper
# itself is left to PID 1; a test runs `run DIR &` as its own child instead
# (tests/lib/functions.sh does), which also keeps the cluster in the test's
# process group.
#
# The env: AWS_ENDPOINT_URL (http://127.0.0.1:PORT), AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION=us-east-1, S3_BUCKET (created, empty) and
# CEPH_CONF. `rgw dns name = localhost`, so virtual-host requests work too:
# http://BUCKET.localhost:PORT/KEY (curl resolves *.localhost to loopback).
# S3_MEM_BYTES (default 2G) caps what the memstore OSD may hold, in RAM.
set -euo pipefail

KEY=STELLARTESTACCESSKEY
SECRET=stellarTestSecretKey0123456789abcdefghij
BUCKET=stellar-test
REGION=us-east-1
DEADLINE_S=60

usage() { echo "usage: $0 start|stop|run DIR" >&2; exit 2; }
[ $# = 2 ] || usage
cmd=$1
DIR=$(realpath -m "$2")
CONF=$DIR/ceph.conf

say() { echo "s3-server: $*" >&2; }

# running PID: PID exists and is not a zombie.
running() {
        local s
        s=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) || true
        [ -n "$s" ] && [ "$s" != Z ]
}

# ours PID: PID is alive (not a zombie) and is one of ours: a daemon reading
# DIR/ceph.conf or the keeper of DIR. A recycled PID is never signalled.
ours() {
        running "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null |
                grep -qF -e "$DIR/ceph.conf " -e " $DIR "
}

# free_ports N: the first of N consecutive free TCP ports on 127.0.0.1, below
# the kernel's ephemeral range so that no outgoing connection takes one.
free_ports() {
        python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 32000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
        print(base)
        sys.exit(0)
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
sys.exit("no free port range")
EOF
}

# ------------------------------------------------------------------ stop
# stop_pid NAME PID: SIGTERM, up to 10 s, then SIGKILL; reap it if ours.
stop_pid() {
        local name=$1 pid=$2
        ours "$pid" || return 0
        kill -TERM "$pid" 2>/dev/null || return 0
        for _ in $(seq 100); do ours "$pid" || break; sleep 0.1; done
        if ours "$pid"; then
                say "$name ($pid) ignored SIGTERM, killing it"
                kill -KILL "$pid" 2>/dev/null || true
                for _ in $(seq 50); do ours "$pid" || break; sleep 0.1; done
        fi
        wait "$pid" 2>/dev/null || true
}

# stop_daemons: clients before servers, so radosgw does not wait on a gone OSD.
stop_daemons() {
        for d in rgw osd mon; do
                [ -f "$DIR/pids/$d" ] && stop_pid "$d" "$(cat "$DIR/pids/$d")"
                rm -f "$DIR/pids/$d"
        done
}

if [ "$cmd" = stop ]; then
        [ -d "$DIR/pids" ] || exit 0
        # The keeper stops its own children and reaps them; whatever outlived
        # it (keeper killed with SIGKILL) is stopped here, by recorded PID.
        [ -f "$DIR/pids/keeper" ] && stop_pid keeper "$(cat "$DIR/pids/keeper")"
        stop_daemons
        rm -f "$DIR/pids/keeper" "$DIR/env"
        exit 0
fi

# ------------------------------------------------------------------ start/run
# prepare: a fresh DIR. Only a directory that is empty or that this script
# made (the .s3-server mark) is ever wiped, and never one still in use.
prepare() {
        for c in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl python3; do
                command -v $c >/dev/null ||
                        { say "$c is missing (scripts/setup.sh installs ceph-mon ceph-osd radosgw ceph-common)"; exit 1; }
        done
        if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
                [ -f "$DIR/.s3-server" ] || { say "$DIR is not empty and not ours; not wiping it"; exit 1; }
                for f in "$DIR"/pids/*; do
                        [ -f "$f" ] && ours "$(cat "$f")" && { say "already running in $DIR (stop it first)"; exit 1; }
                done
        fi
        # Ceph's admin sockets (AF_UNIX, 108 bytes) live under DIR.
        [ ${#DIR} -le 80 ] || { say "DIR must be at most 80 characters: $DIR"; exit 1; }
        rm -rf "$DIR"
        mkdir -p "$DIR"/{mon,osd,log,run,pids,tmp}
        touch "$DIR/.s3-server"
}

# keeper: bring the cluster up as our children, publish the env, then wait.
keeper() {
        local t0 base mon_port s3_port fsid uuid id code
        t0=$SECONDS
        echo $BASHPID >"$DIR/pids/keeper"
        trap 'stop_daemons; exit 0' TERM INT HUP
        base=$(free_ports 16)
        mon_port=$base
        s3_port=$((base + 1))
        fsid=$(cat /proc/sys/kernel/random/uuid)
        uuid=$(cat /proc/sys/kernel/random/uuid)
        write_conf "$fsid" "$mon_port" "$s3_port" $((base + 2)) $((base + 15))
        export CEPH_CONF=$CONF

        # die MSG: what failed, the end of every log, no daemon left behind.
        die() {
                say "ERROR: $* (after $((SECONDS - t0)) s)"
                for f in "$DIR"/log/*; do
                        [ -s "$f" ] && { echo "---- $f" >&2; tail -n 20 "$f" >&2; }
                done
                stop_daemons
                exit 1
        }
        # until_ok NAME CMD...: retry CMD until it succeeds, as long as daemon
        # NAME runs and the deadline has not passed.
        until_ok() {
                local name=$1
                shift
                while ! "$@" >/dev/null 2>&1; do
                        ours "$(cat "$DIR/pids/$name")" || die "$name exited"
                        [ $((SECONDS - t0)) -lt $DEADLINE_S ] || return 1
                        sleep 0.2
                done
        }
        # launch NAME CMD...: a daemon in the foreground (-f), as our child.
        launch() {
                local name=$1
                shift
                "$@" -c "$CONF" -f </dev/null >>"$DIR/log/$name.out" 2>&1 &
                echo $! >"$DIR/pids/$name"
        }
        ceph_() { timeout 20 ceph --connect-timeout 10 "$@"; }
        osd_up() { ceph_ osd dump | grep -q "^osd\.$id up"; }
        rgw_up() { [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$s3_port/")" = 200 ]; }

        monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/tmp/monmap" \
                >>"$DIR/log/mkfs.log" 2>&1 || die "monmaptool failed"
        ceph-mon --mkfs -i a --monmap "$DIR/tmp/monmap" -c "$CONF" >>"$DIR/log/mkfs.log" 2>&1 ||
                die "ceph-mon --mkfs failed"
        launch mon ceph-mon -i a
        until_ok mon ceph_ mon stat || die "the monitor did not answer"
        say "mon up after $((SECONDS - t0)) s"

        id=$(ceph_ osd new "$uuid" 2>>"$DIR/log/mkfs.log") || die "ceph osd new failed"
        mkdir -p "$DIR/osd/ceph-$id"
        ceph-osd --mkfs -i "$id" --osd-uuid "$uuid" -c "$CONF" >>"$DIR/log/mkfs.log" 2>&1 ||
                die "ceph-osd --mkfs failed"
        launch osd ceph-osd -i "$id"
        until_ok osd osd_up || die "the OSD did not come up"
        say "osd up after $((SECONDS - t0)) s"

        launch rgw radosgw -n client.rgw.a
        until_ok rgw rgw_up || die "radosgw did not answer 200 on http://127.0.0.1:$s3_port/"
        say "radosgw up after $((SECONDS - t0)) s"

        timeout 30 radosgw-admin user create --uid=stellar --display-name="stellar tests" \
                --access-key="$KEY" --secret-key="$SECRET" >"$DIR/tmp/user.json" 2>>"$DIR/log/admin.log" ||
                die "radosgw-admin user create failed"
        code=$(curl -sS -o "$DIR/tmp/bucket.out" -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:$REGION:s3" \
                --user "$KEY:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
                "http://127.0.0.1:$s3_port/$BUCKET" 2>&1) || true
        [ "$code" = 200 ] || { cat "$DIR/tmp/bucket.out" >&2; die "creating bucket $BUCKET answered $code"; }

        cat >"$DIR/env.tmp" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=$KEY
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=$REGION
export S3_BUCKET=$BUCKET
export CEPH_CONF=$CONF
EOF
        mv "$DIR/env.tmp" "$DIR/env"
        cat "$DIR/env"
        say "ready after $((SECONDS - t0)) s: http://127.0.0.1:$s3_port bucket $BUCKET"
        # Wait until signalled (the trap stops the daemons) or all are gone.
        wait || true
        stop_daemons
}

# write_conf FSID MON_PORT S3_PORT PORT_MIN PORT_MAX: DIR/ceph.conf.
write_conf() {
        cat >"$CONF" <<EOF
# Written by s3-server.sh: a loopback-only, single-replica test cluster.
[global]
fsid = $1
mon host = v2:127.0.0.1:$2
mon initial members = a
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv6 = false
ms bind port min = $4
ms bind port max = $5
# No cephx. With auth off radosgw still asks for "secure" messenger mode by
# default and then hangs: every side must agree on crc.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms mon service mode = crc
ms service mode = crc
ms cluster mode = crc
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
# A stopped cluster must not hang its clients for minutes.
client mount timeout = 20
rados mon op timeout = 30
rados osd op timeout = 30
keyring = /dev/null
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
crash dir = $DIR/tmp
log to stderr = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = $DIR/mon/\$cluster-\$id
mon cluster log file = $DIR/log/cluster.log
# Every pool, user and bucket radosgw creates is a map change; proposing
# them every 50 ms instead of every second makes the start ~4x faster.
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $(numfmt --from=iec "${S3_MEM_BYTES:-2G}")
osd op num shards = 2
osd op num threads per shard = 2

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$3
rgw dns name = localhost
rgw data = $DIR/rgw
rgw thread pool size = 64
rgw enable usage log = false
EOF
}

case $cmd in
run)
        prepare
        keeper
        ;;
start)
        prepare
        setsid "$0" _keep "$DIR" </dev/null >"$DIR/keeper.log" 2>&1 &
        k=$!
        trap 'kill -TERM $k 2>/dev/null; wait $k; exit 130' INT TERM
        for _ in $(seq $((DEADLINE_S * 10 + 300))); do
                [ -f "$DIR/env" ] && { cat "$DIR/env"; exit 0; }
                running $k || break
                sleep 0.1
        done
        cat "$DIR/keeper.log" >&2
        kill -TERM $k 2>/dev/null || true
        wait $k || true
        say "did not come up; logs in $DIR/log"
        exit 1
        ;;
_keep)
        keeper
        ;;
*)
        usage
        ;;
esac
