#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# build-initramfs.sh OUTDIR: a kernel and a busybox initramfs that boot under
# QEMU/TCG and test the guest's first virtio disk (/dev/vda).
#
# The kernel is Debian 12's current cloud kernel, fetched with `apt-get
# download` and unpacked with `dpkg -x` (nothing is installed). Debian builds
# virtio as modules, so the initramfs insmods them itself (no modprobe, no
# modules.dep: the order below matters). Its /init reads the kernel command
# line and runs one test, printing marker lines on the serial console:
#   stellar.test=read    STELLAR_VDA_SIZE <bytes>
#                        STELLAR_VDA_SHA256 <sha256 of /dev/vda>
#   stellar.test=write   writes OUTDIR/marker.bin (4096 bytes beginning with
#                        'STELLAR-WRITE-TEST') at byte offset 1 MiB, syncs,
#                        STELLAR_WROTE <sha256 of the block>, drops the guest's
#                        caches, reads the block back from the disk:
#                        STELLAR_READBACK <sha256 of what was read>
# then STELLAR_DONE <test> (or STELLAR_ERROR <why>) and a power-off.
#
# Leaves in OUTDIR: vmlinuz, initramfs.cpio.gz, marker.bin, kver. Both are
# reused while they are newer than this script; a lock makes concurrent runs
# wait for one build. Needs: apt (with package lists), dpkg, busybox-static
# (installed here with apt-get when missing and run as root), gzip.
# KPKG=linux-image-... picks another kernel package.
set -euo pipefail

OUT=${1:?usage: build-initramfs.sh OUTDIR}
SELF=$(readlink -f "$0")
# insmod order: each module after the ones it needs.
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio virtio_blk"
MARKER_OFFSET=$((1 << 20))

err() {
        echo "build-initramfs: $*" >&2
        exit 1
}
note() { echo "build-initramfs: $*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }
fresh() { [ -s "$1" ] && [ "$1" -nt "$SELF" ]; }

trap 'echo "build-initramfs: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
mkdir -p "$OUT" || err "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT/.lock"
flock -w 900 9 || err "timed out waiting for another build in $OUT"

if fresh "$OUT/vmlinuz" && fresh "$OUT/initramfs.cpio.gz" && fresh "$OUT/marker.bin"; then
        exit 0
fi

WORK=$(mktemp -d "$OUT/.build-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- busybox (static: the initramfs has no libc) ---
BUSYBOX=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep "ok installed" >/dev/null; then
        is_root || err "package busybox-static is missing (apt-get install busybox-static, as root)"
        note "installing busybox-static"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
                --no-install-recommends busybox-static >/dev/null ||
                err "apt-get install busybox-static failed"
fi
[ -x "$BUSYBOX" ] || err "$BUSYBOX missing although busybox-static is installed"
"$BUSYBOX" --list | grep -x cpio >/dev/null || err "$BUSYBOX has no cpio applet"

# --- kernel ---
pick_kernel() {
        # The cloud metapackage depends on the current ABI's image package.
        # (awk reads everything: an early exit would SIGPIPE apt-cache and,
        # under pipefail, fail the assignment that calls this)
        apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                awk '/Depends: linux-image-[0-9]/ && !p { print $2; p = 1 }' || true
}
if ! fresh "$OUT/vmlinuz"; then
        user_kpkg=${KPKG:-}
        KPKG=${KPKG:-$(pick_kernel)}
        if [ -z "$KPKG" ] && is_root; then
                note "no linux-image-cloud-amd64 in the package lists: apt-get update"
                apt-get update -qq >/dev/null 2>&1 || true
                KPKG=$(pick_kernel)
        fi
        [ -n "$KPKG" ] || err "cannot find the Debian cloud kernel package (apt-cache depends linux-image-cloud-amd64 names none; run apt-get update)"
        note "downloading $KPKG"
        get() { (cd "$WORK" && apt-get download -o APT::Sandbox::User=root "$KPKG") >"$WORK/apt.log" 2>&1; }
        if ! get; then
                # stale lists can name a package the mirror has dropped: update once
                ok=0
                if is_root && apt-get update -qq >/dev/null 2>&1; then
                        KPKG=${user_kpkg:-$(pick_kernel)}
                        [ -n "$KPKG" ] && get && ok=1
                fi
                [ $ok = 1 ] || { cat "$WORK/apt.log" >&2; err "apt-get download $KPKG failed"; }
        fi
        deb=$(find "$WORK" -maxdepth 1 -name 'linux-image-*.deb' -print -quit)
        [ -n "$deb" ] || err "apt-get download left no .deb in $WORK"
        dpkg -x "$deb" "$WORK/k" || err "dpkg -x $deb failed"
        kver=$(find "$WORK/k/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' -quit)
        [ -n "$kver" ] || err "$deb holds no /lib/modules"
        vmlinuz=$WORK/k/boot/vmlinuz-$kver
        [ -f "$vmlinuz" ] || err "$deb holds no /boot/vmlinuz-$kver"
        mkdir -p "$WORK/mods.new"
        for m in $MODULES; do
                f=$(find "$WORK/k/lib/modules/$kver/kernel" -name "$m.ko*" -print -quit)
                if [ -z "$f" ]; then
                        # built into this kernel: nothing to load
                        grep -q "/$m.ko\$" "$WORK/k/lib/modules/$kver/modules.builtin" 2>/dev/null ||
                                err "module $m is neither in $deb nor built into its kernel"
                        continue
                fi
                case $f in
                *.ko) cp "$f" "$WORK/mods.new/$m.ko" ;;
                *.ko.xz) xz -dc "$f" >"$WORK/mods.new/$m.ko" ;;
                *.ko.zst) zstd -qdc "$f" >"$WORK/mods.new/$m.ko" ;;
                *) err "cannot unpack module $f" ;;
                esac
        done
        rm -rf "$OUT/modules"
        mv "$WORK/mods.new" "$OUT/modules"
        echo "$kver" >"$OUT/kver"
        cp "$vmlinuz" "$WORK/vmlinuz"
        mv "$WORK/vmlinuz" "$OUT/vmlinuz"
        rm -rf "$WORK/k" "$deb"
fi
[ -d "$OUT/modules" ] || err "$OUT/modules missing: remove $OUT/vmlinuz to fetch the kernel again"

# --- the block the write test writes ---
# (into a file first: head closing a pipe early would SIGPIPE the writer)
{
        printf 'STELLAR-WRITE-TEST\n'
        i=0
        while [ $i -lt 160 ]; do
                printf 'STELLAR-WRITE-TEST line %03d at offset %d\n' $i $MARKER_OFFSET
                i=$((i + 1))
        done
} >"$WORK/marker.txt"
head -c 4096 "$WORK/marker.txt" >"$WORK/marker.bin"
[ "$(stat -c %s "$WORK/marker.bin")" = 4096 ] || err "marker block is not 4096 bytes"

# --- the initramfs ---
R=$WORK/root
mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/lib/modules"
cp "$BUSYBOX" "$R/bin/busybox"
cp "$WORK/marker.bin" "$R/marker.bin"
loaded=""
for m in $MODULES; do
        if [ -f "$OUT/modules/$m.ko" ]; then
                cp "$OUT/modules/$m.ko" "$R/lib/modules/"
                loaded="$loaded $m"
        fi
done

cat >"$R/init" <<EOF
#!/bin/busybox sh
# Generated by tests/vm/build-initramfs.sh. PID 1 of the test guest.
MODULES="$loaded"
MARKER_BLOCK=$((MARKER_OFFSET / 4096))
EOF
cat >>"$R/init" <<'EOF'
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

halt() {
        sync
        poweroff -f
        sleep 60
}
die() {
        echo "STELLAR_ERROR $*"
        halt
}

test=
for w in $(cat /proc/cmdline); do
        case $w in
        stellar.test=*) test=${w#stellar.test=} ;;
        esac
done
echo "STELLAR_INIT test=$test uptime=$(cut -d' ' -f1 /proc/uptime)"

for m in $MODULES; do
        insmod /lib/modules/$m.ko || die "insmod $m failed"
done
i=0
while [ ! -b /dev/vda ]; do
        [ $i -lt 200 ] || die "no /dev/vda after 20 s; block devices: $(ls /sys/block)"
        sleep 0.1
        i=$((i + 1))
done
echo "STELLAR_VDA_SIZE $(($(cat /sys/block/vda/size) * 512))"

case $test in
read)
        h=$(sha256sum /dev/vda) || die "reading /dev/vda failed"
        echo "STELLAR_VDA_SHA256 ${h%% *}"
        ;;
write)
        dd if=/marker.bin of=/dev/vda bs=4096 seek=$MARKER_BLOCK count=1 conv=notrunc,fsync 2>/dev/null ||
                die "writing /dev/vda failed"
        sync
        h=$(sha256sum /marker.bin)
        echo "STELLAR_WROTE ${h%% *}"
        # read it back from the disk, not from the guest's page cache
        blockdev --flushbufs /dev/vda
        echo 3 >/proc/sys/vm/drop_caches
        h=$(dd if=/dev/vda bs=4096 skip=$MARKER_BLOCK count=1 2>/dev/null | sha256sum) ||
                die "reading /dev/vda back failed"
        echo "STELLAR_READBACK ${h%% *}"
        ;;
*)
        die "unknown or missing stellar.test=$test (read|write)"
        ;;
esac
echo "STELLAR_DONE $test uptime=$(cut -d' ' -f1 /proc/uptime)"
halt
EOF
chmod 755 "$R/init"

(cd "$R" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) |
        gzip -1 >"$WORK/initramfs.cpio.gz" || err "creating the initramfs failed"
mv "$WORK/marker.bin" "$OUT/marker.bin"
mv "$WORK/initramfs.cpio.gz" "$OUT/initramfs.cpio.gz"
note "built $OUT (kernel $(cat "$OUT/kver"))"
