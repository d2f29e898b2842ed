/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsck of the volumes' deltas: every volume's journal is replayed read-only
 * (torn tails are fine, damage is reported with its offset), and delta files
 * that belong to no volume, or data without its journal, are reported. It
 * never changes anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stellar/volume.h>

#include "../store/store-api.h"
#include "../util/fs.h"
#include "delta.h"
#include "volume-internal.h"

static void report_one(st_fsck_report_fn report, void *userdata, st_fsck_result *res,
                       int severity, const char *file, uint64_t off, const char *msg) {
        if (severity)
                res->n_errors++;
        else
                res->n_warnings++;
        if (report)
                report(userdata, severity, file, off, msg);
}

static bool visible(const char *name) {
        return name[0] != '.';
}

static void report_bad_block(st_fsck_report_fn report, void *userdata, st_fsck_result *res,
                             const char *name, uint64_t bad_block, uint64_t bad_slot) {
        char path[REF_NAME_MAX + 32], msg[300];
        snprintf(path, sizeof path, "deltas/%s.data", name);
        snprintf(msg, sizeof msg, "block %llu of volume %s does not match the checksum "
                 "its journal record keeps (the data is damaged)",
                 (unsigned long long)bad_block, name);
        report_one(report, userdata, res, 1, path, bad_slot * DELTA_BLOCK, msg);
}

static int check_volume(st_store *s, const char *name, const store_ref *ref,
                        st_fsck_report_fn report, void *userdata, st_fsck_result *res) {
        uint64_t bad_block, bad_slot;
        /* Open here (the daemon's): what it holds is checked, not the files,
         * which a writer changes under us. */
        int k = volume_verify_open(s, name, &bad_block, &bad_slot);
        if (k != -ENOENT) {
                res->deltas_checked++;
                if (k == -EBADMSG)
                        report_bad_block(report, userdata, res, name, bad_block, bad_slot);
                return k == -ENOMEM ? k : 0;
        }
        char file[REF_NAME_MAX + 24];
        snprintf(file, sizeof file, "%s.map", name);
        struct stat st;
        bool has_map = fstatat(store_deltas_fd(s), file, &st, 0) == 0;
        snprintf(file, sizeof file, "%s.data", name);
        if (!has_map) {
                if (fstatat(store_deltas_fd(s), file, &st, 0) == 0 && st.st_size > 0) {
                        char path[REF_NAME_MAX + 32];
                        snprintf(path, sizeof path, "deltas/%s", file);
                        report_one(report, userdata, res, 1, path, ST_DIAG_NO_OFFSET,
                                   "the volume's data file has no journal: its writes cannot "
                                   "be found (deltas/NAME.map is missing)");
                }
                return 0;
        }
        delta d;
        st_diag diag = { 0 };
        int r = delta_open(store_deltas_fd(s), name, ref->ctime_ns,
                           (ref->size + DELTA_BLOCK - 1) / DELTA_BLOCK, true, &d, &diag);
        res->deltas_checked++;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                char path[REF_NAME_MAX + 32], msg[400];
                snprintf(path, sizeof path, "deltas/%s.map", name);
                snprintf(msg, sizeof msg, "%s: volume %s cannot be opened or committed until it "
                         "is repaired or removed", diag.what ? diag.what : strerror(-r), name);
                report_one(report, userdata, res, 1, diag.file[0] ? diag.file : path,
                           diag.what ? diag.offset : ST_DIAG_NO_OFFSET, msg);
                return 0;
        }
        r = delta_verify(&d, &bad_block, &bad_slot);
        if (r == -ENOMEM) {
                delta_close(&d);
                return r;
        }
        if (r < 0)
                report_bad_block(report, userdata, res, name, bad_block, bad_slot);
        if (d.torn_len) {
                char path[REF_NAME_MAX + 32], msg[200];
                snprintf(path, sizeof path, "deltas/%s.map", name);
                snprintf(msg, sizeof msg, "%llu bytes at the end that no flush committed and no "
                         "write left whole with its data (never flushed; cut on the next write)",
                         (unsigned long long)d.torn_len);
                report_one(report, userdata, res, 0, path, d.map_len, msg);
        }
        delta_close(&d);
        return 0;
}

int st_volume_fsck(st_store *s, st_fsck_report_fn report, void *userdata, st_fsck_result *res) {
        char **names;
        size_t n;
        int r = store_list_names(s, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; r == 0 && i < n; i++) {
                store_ref ref;
                if (store_ref_load(s, names[i], &ref, NULL) < 0 || ref.kind != ST_KIND_VOLUME)
                        continue; /* a damaged ref is the store fsck's to report */
                r = check_volume(s, names[i], &ref, report, userdata, res);
        }
        store_free_names(names, n);
        if (r < 0)
                return r;
        /* Delta files of names that are not volumes: rm removes them before
         * the ref, so they are the writes of a volume whose ref was lost. */
        char **files;
        size_t n_files;
        r = st_list_dir(store_deltas_fd(s), visible, &files, &n_files);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_files; i++) {
                const char *dot = strrchr(files[i], '.');
                char name[REF_NAME_MAX + 8], map[REF_NAME_MAX + 16];
                if (!dot || (strcmp(dot, ".map") != 0 && strcmp(dot, ".data") != 0) ||
                    (size_t)(dot - files[i]) >= sizeof name)
                        continue;
                snprintf(name, sizeof name, "%.*s", (int)(dot - files[i]), files[i]);
                if (!st_name_valid(name))
                        continue;
                snprintf(map, sizeof map, "%s.map", name);
                struct stat st;
                /* one report per name: at its journal, or its data alone */
                if (!store_delta_orphan_writes(s, name) ||
                    (strcmp(dot, ".data") == 0 && fstatat(store_deltas_fd(s), map, &st, 0) == 0))
                        continue;
                char path[REF_NAME_MAX + 40], msg[3 * REF_NAME_MAX + 200];
                snprintf(path, sizeof path, "deltas/%s", files[i]);
                snprintf(msg, sizeof msg,
                         "writes of volume '%s', whose ref is missing: kept (put refs/%s "
                         "back, or 'stellar rm %s' removes them)",
                         name, name, name);
                report_one(report, userdata, res, 1, path, ST_DIAG_NO_OFFSET, msg);
        }
        st_names_free(files, n_files);
        return 0;
}
