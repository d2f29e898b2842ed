#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Volumes (issue 3): clone cost, density of many committed clones, 4 KiB
# random I/O; stellar through its library (bench/bench-volume.c) and its CLI,
# against qcow2 overlays over A.raw made and driven by qemu-img / qemu-io.
# Everything lives on the VM's disk ($STELLAR_BENCH_WORK/volume): clones,
# commits and flushes are fsync-bound, as in real use.
#   clone-lib   `bench-volume clone`: 1000 st_volume_clone() of A (per call
#               µs: median, p99), 200 st_volume_snapshot() of an unwritten
#               volume, closed and held open. Fresh store per run; medians
#               over the runs.
#   clone-cli   `stellar clone A vmN` against `qemu-img create -f qcow2 -b
#               A.raw -F raw ovlN.qcow2`: wall time of the whole process,
#               interleaved pairs (alternating who goes first), medians; bytes
#               on disk per empty clone: refs/vmN against the overlay (apparent
#               and allocated).
#   density     N clones of A (1000; --quick 20), each given the same 5 MiB at
#               512 MiB (a package update) and 5 MiB of its own at 768 MiB +
#               (i % 200) * 5 MiB (`bench-volume gen i`: a seeded splitmix64
#               stream, incompressible), then committed. stellar: `bench-volume
#               density` (library: clone, open, write, commit, close); growth
#               of the store by part (packs = data; manifests + refs + index =
#               metadata; deltas) and du -sb / allocated. qcow2: per clone
#               `qemu-img create` + `qemu-io -c "write -s FILE OFF LEN"` of the
#               same two files; sum of overlay sizes (apparent and allocated),
#               each overlay deleted once measured except the first and last,
#               which are checked byte-equal to stellar's export of the same
#               clone (`qemu-img compare`). Deterministic: one run.
#   io          `bench-volume io` against `qemu-img bench` on a fresh qcow2
#               overlay per write phase. Offsets: a stride permutation of the
#               range's 4 KiB blocks (block k*stride mod nblocks, stride =
#               floor(0.618 nblocks)|1), the pattern `qemu-img bench -S`
#               makes; the range is cut out of the overlay with a raw
#               offset/size node (--image-opts), so both sides hit the same
#               offsets in the same order. Writes: NW over [1 GiB, 2 GiB) with
#               a flush every 64 (qemu: --flush-interval=64, cache none and
#               writeback), and NF with FUA on every write (qemu: cache
#               directsync and writethrough). Reads, 1 and 2 threads (qemu:
#               -d 1 / -d 2): the NW blocks just written (the delta), and NRB
#               over [0, 256 MiB) of A, which nothing wrote (shared chunks;
#               where A's data is). qemu reads in cache none (O_DIRECT) and
#               writeback after reading the overlay into the page cache, as
#               stellar's delta and packs are. Interleaved runs, medians.
#
# Usage: bench/volume.sh [--quick]
# Summary line (stdout): volume: key=value ... (see the end of this file)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
need_tool qemu-img qemu-utils
need_tool qemu-io qemu-utils
BV=$BUILD/bench/bench-volume
[ -x "$BV" ] || die "no $BV (build the tree: ninja -C $BUILD)"

W=$WORK/volume
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
warm "$IMG_A"

n_lib=$(runs 3 1)
n_clones=$(runs 1000 100)
n_snaps=$(runs 200 20)
n_cli=$(runs 30 5)
n_density=${STELLAR_BENCH_DENSITY_N:-$(runs 1000 20)}
n_io=$(runs 5 1)
nw=$(runs 16384 2048)
nf=$(runs 2048 256)
nrb=$(runs 65536 8192)

new_store() { # DIR: a store holding image A
    "$STELLAR" --store "$1" init >/dev/null
    "$STELLAR" --store "$1" import "$IMG_A" A >/dev/null
}
# apparent and allocated bytes of a file
fbytes() { stat -c '%s %b %B' "$1" | awk '{ print $1, $2 * $3 }'; }
# sum of apparent file sizes under a path
tree_bytes() { du -sb "$1" | cut -f1; }
tree_alloc() { du -sB1 "$1" | cut -f1; }
# a command's wall seconds (no /usr/bin/time: its own exec would count)
wall() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f", b - a }'
}
# medians per key of "prefix: k=v ..." lines in FILE, as "k=v ..."
medians() {
    python3 - "$1" <<'EOF'
import statistics, sys
runs = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in open(sys.argv[1])]
out = []
for k in runs[0]:
    try:
        m = statistics.median(float(r[k]) for r in runs)
        out.append("%s=%s" % (k, "%d" % m if m == int(m) else "%.6g" % m))
    except ValueError:
        out.append("%s=%s" % (k, runs[0][k]))
print(" ".join(out))
EOF
}
stride_of() { echo $(( ($1 * 6180339887 / 10000000000) | 1 )); }

line="volume: date=$(date -u +%Y-%m-%dT%H:%MZ) rev=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
line+=" qemu=$(qemu-img --version | awk 'NR == 1 { print $3 }')"
line+=" host_cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1 | tr ' ' '_') host_cpus=$(nproc)"
line+=" host_mem_gib=$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) host_kernel=$(uname -r)"

# ---- 1a. clone and snapshot through the library
log "== clone (library): $n_lib runs x $n_clones clones, $n_snaps snapshots"
for ((r = 0; r < n_lib; r++)); do
    s=$W/lib-$r
    new_store "$s"
    "$BV" clone "$s" A "$n_clones" "$n_snaps" 2>/dev/null >>"$W/clone.runs"
    rm -rf "$s"
done
line+=" lib_runs=$n_lib $(medians "$W/clone.runs" | sed 's/\([a-z_0-9]*=\)/lib_\1/g')"

# ---- 1b. clone through the CLI vs qemu-img create
log "== clone (CLI): $n_cli interleaved pairs"
s=$W/cli
new_store "$s"
mkdir -p "$W/ovl"
st_t=() q_t=()
for ((i = 0; i < n_cli; i++)); do
    if ((i % 2 == 0)); then
        st_t+=("$(wall "$STELLAR" --store "$s" clone A "vm$i")")
        q_t+=("$(wall qemu-img create -q -f qcow2 -b "$IMG_A" -F raw "$W/ovl/ovl$i.qcow2")")
    else
        q_t+=("$(wall qemu-img create -q -f qcow2 -b "$IMG_A" -F raw "$W/ovl/ovl$i.qcow2")")
        st_t+=("$(wall "$STELLAR" --store "$s" clone A "vm$i")")
    fi
done
st_ms=$(CALC_FMT=%.3f calc "$(median "${st_t[@]}") * 1000")
q_ms=$(CALC_FMT=%.3f calc "$(median "${q_t[@]}") * 1000")
read -r ref_b ref_a < <(fbytes "$s/refs/vm0")
read -r ovl_b ovl_a < <(fbytes "$W/ovl/ovl0.qcow2")
# a fresh clone has no delta files; check rather than assume
delta_files=$(find "$s/deltas" -type f | wc -l)
line+=" cli_runs=$n_cli cli_stellar_ms=$st_ms cli_qemu_ms=$q_ms"
line+=" cli_ratio=$(CALC_FMT=%.3f calc "$st_ms / $q_ms")"
line+=" ref_bytes=$ref_b ref_alloc=$ref_a ovl_bytes=$ovl_b ovl_alloc=$ovl_a delta_files=$delta_files"
line+=" bytes_ratio=$(CALC_FMT=%.5f calc "$ref_b / $ovl_b") alloc_ratio=$(CALC_FMT=%.4f calc "$ref_a / $ovl_a")"
log "stellar clone $st_ms ms, qemu-img create $q_ms ms; $ref_b vs $ovl_b bytes"
rm -rf "$s" "$W/ovl"

# ---- 2. density
log "== density: $n_density clones x (5 MiB shared + 5 MiB unique)"
len=$((5 << 20))
shared=$W/shared.bin
"$BV" gen shared "$len" "$shared"
s=$W/dens
new_store "$s"
sync
parts() { # DIR -> "packs manifests refs index deltas du_sb du_alloc"
    echo "$(tree_bytes "$1/packs") $(tree_bytes "$1/manifests") $(tree_bytes "$1/refs")" \
         "$(fsize "$1/index") $(tree_bytes "$1/deltas") $(tree_bytes "$1") $(tree_alloc "$1")"
}
read -r p0 m0 r0 i0 d0 t0 a0 < <(parts "$s")
dl=$("$BV" density "$s" A "$n_density" "$shared" gen)
sync
read -r p1 m1 r1 i1 d1 t1 a1 < <(parts "$s")
line+=" dens_n=$n_density dens_write_bytes=$((2 * len))"
for k in seconds per_clone_ms clone_open_median_ms write_median_ms commit_median_ms \
         commit_first10pct_mean_ms commit_last10pct_mean_ms new_chunks new_bytes new_stored chunks; do
    line+=" dens_st_$k=$(sed -n "s/.* $k=\([^ ]*\).*/\1/p" <<<"$dl")"
done
line+=" dens_st_packs=$((p1 - p0)) dens_st_manifests=$((m1 - m0)) dens_st_refs=$((r1 - r0))"
line+=" dens_st_index=$((i1 - i0)) dens_st_deltas=$((d1 - d0)) dens_st_du=$((t1 - t0)) dens_st_alloc=$((a1 - a0))"

q_sum=0 q_alloc=0 q_t=()
q0=$EPOCHREALTIME
for ((i = 0; i < n_density; i++)); do
    "$BV" gen "$i" "$len" "$W/u.bin"
    q=$W/q$i.qcow2
    uoff=$(( (768 << 20) + (i % 200) * len ))
    t=$EPOCHREALTIME
    qemu-img create -q -f qcow2 -b "$IMG_A" -F raw "$q"
    qemu-io -f qcow2 -c "write -q -s $shared $((512 << 20)) $len" -c "write -q -s $W/u.bin $uoff $len" "$q" >/dev/null
    q_t+=("$(awk -v a="$t" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f", b - a }')")
    read -r b a < <(fbytes "$q")
    q_sum=$((q_sum + b)) q_alloc=$((q_alloc + a))
    if ((i > 0 && i < n_density - 1)); then rm -f "$q"; fi
    if (((i + 1) % 100 == 0)); then log "qcow2: $((i + 1))/$n_density"; fi
done
q_secs=$(awk -v a="$q0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
# Same bytes on both sides: the first and last clone, exported, equal the overlays.
same=yes
for i in 0 $((n_density - 1)); do
    "$STELLAR" --store "$s" export "d$i" "$W/x.raw" >/dev/null
    qemu-img compare -q -f raw -F qcow2 "$W/x.raw" "$W/q$i.qcow2" || same=no
    rm -f "$W/x.raw"
done
[ "$same" = yes ] || log "density: stellar and qcow2 clones differ!"
meta=$(( (m1 - m0) + (r1 - r0) + (i1 - i0) + (d1 - d0) ))
line+=" dens_q_bytes=$q_sum dens_q_alloc=$q_alloc dens_q_seconds=$q_secs"
line+=" dens_q_per_clone_ms=$(CALC_FMT=%.2f calc "$(median "${q_t[@]}") * 1000") dens_same=$same"
line+=" dens_meta=$meta dens_meta_pct=$(CALC_FMT=%.3f calc "100 * $meta / ($p1 - $p0)")"
line+=" dens_ratio_du=$(CALC_FMT=%.4f calc "($t1 - $t0) / $q_sum")"
line+=" dens_ratio_alloc=$(CALC_FMT=%.4f calc "($a1 - $a0) / $q_alloc")"
log "density: stellar +$((t1 - t0)) B (packs +$((p1 - p0)), meta +$meta), qcow2 $q_sum B ($q_alloc allocated)"
rm -rf "$s" "$W"/q*.qcow2 "$W/u.bin"

# ---- 3. 4 KiB random I/O
log "== io: $n_io interleaved runs (NW=$nw NF=$nf NRB=$nrb)"
s=$W/io
new_store "$s"
wst=$(stride_of $(((1 << 30) / 4096)))
bst=$(stride_of $(((256 << 20) / 4096)))
qb() { # OUTKEY CACHE OVERLAY RANGE_OFF RANGE_LEN STRIDE COUNT [qemu-img bench options]
    local key=$1 cache=$2 ovl=$3 off=$4 rl=$5 st=$6 c=$7 out secs
    shift 7
    out=$(qemu-img bench --image-opts -c "$c" -s 4096 -S $((st * 4096)) -t "$cache" "$@" \
          "driver=raw,offset=$off,size=$rl,file.driver=qcow2,file.file.filename=$ovl" 2>&1) ||
        die "qemu-img bench failed: $out"
    secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
    [ -n "$secs" ] || die "qemu-img bench: no time in: $out"
    printf ' %s_iops=%.0f' "$key" "$(calc "$c / $secs")"
}
qemu_run() {
    local o=$W/ovl-w.qcow2 ob=$W/ovl-wb.qcow2 f=$W/ovl-f.qcow2 ft=$W/ovl-ft.qcow2 l="qemu:"
    local G=$((1 << 30)) M=$((256 << 20))
    for x in "$o" "$ob" "$f" "$ft"; do qemu-img create -q -f qcow2 -b "$IMG_A" -F raw "$x"; done
    sync
    l+=$(qb w64_none none "$o" $G $G "$wst" "$nw" -w -d 1 --flush-interval=64)
    l+=$(qb w64_wb writeback "$ob" $G $G "$wst" "$nw" -w -d 1 --flush-interval=64)
    l+=$(qb wfua_ds directsync "$f" $G $G "$wst" "$nf" -w -d 1)
    l+=$(qb wfua_wt writethrough "$ft" $G $G "$wst" "$nf" -w -d 1)
    l+=$(qb rd1_none none "$o" $G $G "$wst" "$nw" -d 1)
    l+=$(qb rd2_none none "$o" $G $G "$wst" "$nw" -d 2)
    l+=$(qb rb1_none none "$o" 0 $M "$bst" "$nrb" -d 1)
    l+=$(qb rb2_none none "$o" 0 $M "$bst" "$nrb" -d 2)
    warm "$o" "$IMG_A"
    l+=$(qb rd1_wb writeback "$o" $G $G "$wst" "$nw" -d 1)
    l+=$(qb rd2_wb writeback "$o" $G $G "$wst" "$nw" -d 2)
    l+=$(qb rb1_wb writeback "$o" 0 $M "$bst" "$nrb" -d 1)
    l+=$(qb rb2_wb writeback "$o" 0 $M "$bst" "$nrb" -d 2)
    rm -f "$o" "$ob" "$f" "$ft"
    echo "$l"
}
st_run() {
    sync
    "$BV" io "$s" A "$nw" "$nf" "$nrb" 1G 1G 0 256M 2>/dev/null
}
for ((r = 0; r < n_io; r++)); do
    if ((r % 2 == 0)); then
        st_run >>"$W/io-st.runs"; qemu_run >>"$W/io-q.runs"
    else
        qemu_run >>"$W/io-q.runs"; st_run >>"$W/io-st.runs"
    fi
done
grep -q ' errors=0$' "$W/io-st.runs" || die "io: stellar read back wrong data"
line+=" io_runs=$n_io $(medians "$W/io-st.runs" | sed 's/\([a-z_0-9]*=\)/io_st_\1/g')"
line+=" $(medians "$W/io-q.runs" | sed 's/\([a-z_0-9]*=\)/io_q_\1/g')"
rm -rf "$s"

echo "$line"
