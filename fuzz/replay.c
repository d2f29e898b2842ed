/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A main() for a fuzz target without libFuzzer: runs every file named on the
 * command line, and every regular file in each directory named (not
 * recursively, in name order), through LLVMFuzzerTestOneInput once. This is
 * how `meson test --suite fuzz-replay` runs the corpus in every build. A
 * finding aborts inside the target; an unreadable argument exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Read the whole file into an exact-size buffer (ASan sees over-reads). */
static int run_file(const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f) {
                fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
                return -1;
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        for (;;) {
                uint8_t chunk[65536];
                size_t k = fread(chunk, 1, sizeof chunk, f);
                if (k == 0)
                        break;
                uint8_t *nb = realloc(buf, len + k);
                if (!nb)
                        abort();
                memcpy(nb + len, chunk, k);
                buf = nb;
                len += k;
        }
        int bad = ferror(f);
        fclose(f);
        if (bad) {
                fprintf(stderr, "replay: %s: read error\n", path);
                free(buf);
                return -1;
        }
        (void)LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", len);
        free(buf);
        return 0;
}

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *n_ran) {
        DIR *d = opendir(dir);
        if (!d) {
                fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
                return -1;
        }
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char **nn = realloc(names, (n + 1) * sizeof *names);
                if (!nn || !(nn[n] = strdup(de->d_name)))
                        abort();
                names = nn;
                n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_names);
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                size_t plen = strlen(dir) + strlen(names[i]) + 2;
                char *path = malloc(plen);
                if (!path)
                        abort();
                snprintf(path, plen, "%s/%s", dir, names[i]);
                struct stat st;
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        if (run_file(path) < 0)
                                r = -1;
                        else
                                (*n_ran)++;
                }
                free(path);
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char **argv) {
        size_t n_ran = 0;
        int r = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
                        r = -1;
                } else if (S_ISDIR(st.st_mode)) {
                        if (run_dir(argv[i], &n_ran) < 0)
                                r = -1;
                } else if (run_file(argv[i]) < 0)
                        r = -1;
                else
                        n_ran++;
        }
        printf("replay: ran %zu inputs\n", n_ran);
        return r < 0 ? 1 : 0;
}
