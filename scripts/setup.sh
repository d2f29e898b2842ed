#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The two commands of the README, on a fresh Debian 12 machine (as root):
#   scripts/setup.sh demo   install dependencies, build, run the main job
#   scripts/setup.sh test   install dependencies, build, pass all tests
#                           (gcc build, then clang with ASan+UBSan)
# Options: --no-install skips apt (for machines that have everything).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
shift || true
install=1
for a in "$@"; do
        case $a in
        --no-install) install=0 ;;
        *) echo "unknown option $a" >&2; exit 2 ;;
        esac
done

# Build and runtime needs, then what the tests drive (real tools, real peers).
PKGS_BUILD="gcc libc6-dev meson ninja-build pkgconf libzstd-dev librust-blake3-dev libjansson-dev
        libcurl4-openssl-dev libxxhash-dev libgnutls28-dev python3"
PKGS_TEST="clang libclang-rt-14-dev llvm b3sum e2fsprogs dosfstools mtools fdisk util-linux
        qemu-utils qemu-system-x86 busybox-static libnbd-bin python3-libnbd
        nginx-light zstd curl openssl ceph-mon ceph-osd radosgw ceph-common time"

install_deps() {
        [ $install = 1 ] || return 0
        local need=()
        for p in $PKGS_BUILD ${1:-}; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
        done
        [ ${#need[@]} = 0 ] && return 0
        if [ "$(id -u)" != 0 ]; then
                echo "missing packages: ${need[*]} (run as root, or install them)" >&2
                exit 1
        fi
        echo "installing: ${need[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || true
        apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null
}

build() { # build DIR [meson options...]
        local dir=$1
        shift
        if [ ! -f "$dir/build.ninja" ]; then
                meson setup "$dir" "$@" >/dev/null
        fi
        ninja -C "$dir" >/dev/null
}

case $mode in
demo)
        install_deps "e2fsprogs b3sum"
        build build
        exec scripts/demo.sh build/cli/stellar
        ;;
test)
        install_deps "$PKGS_TEST"
        build build
        rc=0
        meson test -C build --num-processes 2 --print-errorlogs || rc=1
        cp build/meson-logs/testlog.json build/testlog-gcc.json
        # The same suites under ASan+UBSan (clang), crash rounds fewer: the
        # sanitizer is after memory errors, the gcc run already covers the crash space.
        CC=clang build build-asan -Db_sanitize=address,undefined -Db_lundef=false \
                -Dbuildtype=debug -Doptimization=1
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                CRASH_ROUNDS=6 meson test -C build-asan --num-processes 2 --print-errorlogs \
                --timeout-multiplier 3 || rc=1
        cp build-asan/meson-logs/testlog.json build/testlog-asan.json
        exit $rc
        ;;
*)
        echo "usage: scripts/setup.sh demo|test [--no-install]" >&2
        exit 2
        ;;
esac
