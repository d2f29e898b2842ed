/* SPDX-License-Identifier: Apache-2.0 */
/* stellar create, clone, snapshot, commit: the verbs that make and change
 * volumes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <stellar/volume.h>

#include "cli.h"

static const char create_usage[] =
        "Usage: stellar create NAME --size SIZE\n\n"
        "Create an empty writable volume of SIZE bytes (K, M, G, T suffixes). It reads\n"
        "as zeros and costs one small file until it is written.\n";
static const char clone_usage[] =
        "Usage: stellar clone SRC DST\n\n"
        "Make DST, a writable volume with the content of SRC (an image, snapshot or\n"
        "volume). Instant: DST shares SRC's manifest; nothing is copied. A volume's\n"
        "uncommitted writes are committed first.\n";
static const char snapshot_usage[] =
        "Usage: stellar snapshot VOLUME SNAP\n\n"
        "Make SNAP, a read-only point-in-time copy of VOLUME. VOLUME's uncommitted\n"
        "writes are committed first; then the snapshot is instant.\n";
static const char commit_usage[] =
        "Usage: stellar commit [--json] VOLUME\n\n"
        "Fold VOLUME's delta (its writes since the last commit) into deduplicated\n"
        "chunks and a new manifest layer. Atomic: interrupted, the volume is as\n"
        "before or as after.\n";

static int errmsg(const char *what, const char *name, int r) {
        cli_error("%s %s: %s", what, name,
                  r == -EEXIST   ? "the name is taken"
                  : r == -ENOENT ? "no such image, snapshot or volume"
                  : r == -EINVAL ? "invalid name or argument"
                  : r == -EBUSY  ? "the volume is open elsewhere"
                  : r == -EBADMSG ? "its ref or manifests are damaged (see 'stellar fsck')"
                  : r == -ENOTEMPTY ? "the writes of a volume of this name whose ref is missing "
                                      "are kept in deltas/ (see 'stellar fsck'; 'stellar rm "
                                      "NAME' removes them)"
                                 : strerror(-r));
        return 1;
}

int cmd_create(cli *c, int argc, char **argv) {
        const char *name = NULL;
        uint64_t size = 0;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        fprintf(cli_out(), "%s", create_usage);
                        return 0;
                } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
                        if (cli_parse_size(argv[++i], &size) < 0 || size == 0) {
                                cli_error("bad size '%s'", argv[i]);
                                return 2;
                        }
                } else if (!name && argv[i][0] != '-')
                        name = argv[i];
                else {
                        fprintf(cli_err(), "%s", create_usage);
                        return 2;
                }
        }
        if (!name || !size) {
                fprintf(cli_err(), "%s", create_usage);
                return 2;
        }
        st_store *s;
        /* Shared: works while stellar serve runs, which then serves it. */
        if (cli_open(c, ST_STORE_CREATE | ST_STORE_SHARED | ST_STORE_NOINDEX, &s) < 0)
                return 1;
        int r = st_volume_create(s, name, size);
        cli_close(c, s);
        return r < 0 ? errmsg("cannot create", name, r) : 0;
}

static int derive(cli *c, int argc, char **argv, const char *usage, bool snapshot) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (argc - i != 2) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        st_store *s;
        /* A clone only adds a ref: it works while stellar serve runs. A
         * snapshot commits first, which needs the store to itself. */
        if (cli_open(c, snapshot ? 0 : ST_STORE_SHARED | ST_STORE_NOINDEX, &s) < 0)
                return 1;
        int r = snapshot ? st_volume_snapshot(s, argv[i], argv[i + 1])
                         : st_volume_clone(s, argv[i], argv[i + 1]);
        cli_close(c, s);
        if (r == -EBUSY && !snapshot && !c->served) {
                /* The source has writes to commit first: that needs the store
                 * to itself, which we get unless a daemon runs. */
                st_diag d = { 0 };
                if (st_store_open(c->store_dir, 0, &s, &d) == 0) {
                        r = st_volume_clone(s, argv[i], argv[i + 1]);
                        cli_close(c, s);
                }
        }
        if (r == -EBUSY)
                cli_error("cannot clone %s: it has uncommitted writes, and committing needs the "
                          "store to itself (stop stellar serve, commit, then clone)",
                          argv[i]);
        else if (r == -EINVAL && snapshot)
                cli_error("cannot snapshot %s: only a volume can be snapshotted (or a bad name)",
                          argv[i]);
        else if (r < 0)
                return errmsg(snapshot ? "cannot snapshot" : "cannot clone",
                              r == -EEXIST || r == -EINVAL ? argv[i + 1] : argv[i], r);
        return r < 0 ? 1 : 0;
}

int cmd_clone(cli *c, int argc, char **argv) {
        return derive(c, argc, argv, clone_usage, false);
}

int cmd_snapshot(cli *c, int argc, char **argv) {
        return derive(c, argc, argv, snapshot_usage, true);
}

int cmd_commit(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, commit_usage);
        if (i < 0)
                return 2;
        if (argc - i != 1) {
                fprintf(cli_err(), "%s", commit_usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, 0, &s) < 0)
                return 1;
        st_diag d = { 0 };
        st_commit_result res;
        uint64_t t0 = cli_now_ns();
        int r = st_volume_commit_name(s, argv[i], &res, &d);
        double secs = (double)(cli_now_ns() - t0) / 1e9;
        cli_close(c, s);
        if (r == -EROFS) {
                cli_error("commit %s: not a volume (images and snapshots are read-only)", argv[i]);
                return 1;
        }
        if (r < 0 && d.what) {
                cli_diag_error("commit", r, &d);
                return 1;
        }
        if (r < 0)
                return errmsg("cannot commit", argv[i], r);
        if (c->json)
                fprintf(cli_out(), "{\"name\":\"%s\",\"blocks\":%llu,\"new_chunks\":%llu,\"new_bytes\":%llu,"
                       "\"new_stored_bytes\":%llu,\"flattened\":%s,\"seconds\":%.3f}\n",
                       argv[i], (unsigned long long)res.blocks, (unsigned long long)res.new_chunks,
                       (unsigned long long)res.new_bytes, (unsigned long long)res.new_stored,
                       res.flattened ? "true" : "false", secs);
        else if (!c->quiet) {
                char a[32], b[32];
                fprintf(cli_out(), "committed %s: %llu blocks; %llu new chunks, %s new, %s written%s; %.2f s\n",
                       argv[i], (unsigned long long)res.blocks, (unsigned long long)res.new_chunks,
                       cli_size(res.new_bytes, a), cli_size(res.new_stored, b),
                       res.flattened ? " (chain flattened)" : "", secs);
        }
        return 0;
}
