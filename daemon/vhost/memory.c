/* SPDX-License-Identifier: Apache-2.0 */
/* Guest memory regions; see memory.h. */
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "memory.h"

int vhost_fd_holds(int fd, uint64_t len) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        return S_ISREG(st.st_mode) && (uint64_t)st.st_size >= len ? 0 : -EINVAL;
}

int vhost_memory_add(vhost_memory *m, const vhost_region *r, int fd) {
        if (m->n == VHOST_MAX_MEM_SLOTS)
                return -ENOSPC;
        uint64_t len = r->mmap_offset + r->size;
        if (len < r->size || len > SIZE_MAX)
                return -EINVAL;
        for (unsigned i = 0; i < m->n; i++) { /* overlapping guest ranges are refused */
                const vhost_region *o = &m->maps[i].r;
                if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
                        return -EINVAL;
        }
        int k = vhost_fd_holds(fd, len);
        if (k < 0)
                return k;
        void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        m->maps[m->n++] = (vhost_map){ .r = *r, .base = p, .map_len = (size_t)len };
        return 0;
}

int vhost_memory_remove(vhost_memory *m, const vhost_region *r) {
        for (unsigned i = 0; i < m->n; i++)
                if (m->maps[i].r.gpa == r->gpa && m->maps[i].r.size == r->size) {
                        munmap(m->maps[i].base, m->maps[i].map_len);
                        m->maps[i] = m->maps[--m->n];
                        return 0;
                }
        return -ENOENT;
}

void vhost_memory_clear(vhost_memory *m) {
        for (unsigned i = 0; i < m->n; i++)
                munmap(m->maps[i].base, m->maps[i].map_len);
        m->n = 0;
}

void *vhost_gpa(const vhost_memory *m, uint64_t gpa, uint64_t len, uint64_t *ret_len) {
        for (unsigned i = 0; i < m->n; i++) {
                const vhost_map *x = &m->maps[i];
                if (gpa < x->r.gpa || gpa - x->r.gpa >= x->r.size)
                        continue;
                uint64_t in = gpa - x->r.gpa, have = x->r.size - in;
                if (ret_len)
                        *ret_len = have < len ? have : len;
                else if (have < len)
                        return NULL;
                return x->base + x->r.mmap_offset + in;
        }
        return NULL;
}

void *vhost_uva(const vhost_memory *m, uint64_t uva, uint64_t len) {
        for (unsigned i = 0; i < m->n; i++) {
                const vhost_map *x = &m->maps[i];
                if (uva < x->r.uva || uva - x->r.uva >= x->r.size)
                        continue;
                uint64_t in = uva - x->r.uva;
                if (x->r.size - in < len)
                        return NULL;
                return x->base + x->r.mmap_offset + in;
        }
        return NULL;
}
