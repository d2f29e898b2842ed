/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's idle compression: a thread at SCHED_IDLE (it gets a core only
 * when nothing else wants it) that runs st_store_compress_step, about 50 ms
 * of CPU at a time, and sleeps between steps so that its CPU time stays
 * within --compress-cpu percent of one core. A step that finds the store's
 * write mutex taken (an import, a commit, gc) is tried again a second later;
 * one that finds nothing to do waits 5 s (a step that finds nothing costs a
 * sum over the pack table). A damaged record stops it until the next start,
 * logged once: gc and fsck then say more.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "serve.h"

#define STEP_NS (50ull * 1000 * 1000)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool stop, running;
static pthread_t thread;
static _Atomic uint64_t total_in, total_out, total_records, total_dropped;

typedef struct job {
        st_store *s;
        unsigned cpu_percent;
} job;
static job the_job;

static uint64_t now_ns(clockid_t c) {
        struct timespec t;
        clock_gettime(c, &t);
        return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Sleep ns, or less if stopped; false once stopped. */
static bool nap(uint64_t ns) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t t = (uint64_t)until.tv_nsec + ns;
        until.tv_sec += (time_t)(t / 1000000000u);
        until.tv_nsec = (long)(t % 1000000000u);
        pthread_mutex_lock(&lock);
        while (!stop && pthread_cond_timedwait(&cond, &lock, &until) != ETIMEDOUT)
                ;
        bool go = !stop;
        pthread_mutex_unlock(&lock);
        return go;
}

static void *compress_main(void *arg) {
        job *j = arg;
        struct sched_param idle = { .sched_priority = 0 };
        (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle); /* (best effort) */
        bool busy = false; /* a run of steps with work: logged at its start and end */
        bool said_clean = false; /* (once: before any work) */
        st_compress_result sum = { 0 };
        uint64_t run_start = 0;
        for (;;) {
                st_compress_result res = { 0 };
                st_diag d = { 0 };
                uint64_t wall0 = now_ns(CLOCK_MONOTONIC), cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
                int r = st_store_compress_step(j->s, STEP_NS, &res, &d);
                uint64_t wall = now_ns(CLOCK_MONOTONIC) - wall0,
                         cpu = now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
                total_in += res.bytes_in;
                total_out += res.bytes_out;
                total_records += res.records;
                total_dropped += res.packs_dropped;
                sum.bytes_in += res.bytes_in;
                sum.bytes_out += res.bytes_out;
                sum.records += res.records;
                if (r > 0 && !busy && res.records > 0) {
                        busy = true;
                        run_start = wall0;
                        serve_logf("idle compression: compressing what imports left to the cold level "
                              "(at most %u%% of a core)",
                              j->cpu_percent);
                }
                if (r == 0 && !busy && !said_clean) {
                        said_clean = true;
                        serve_logf("idle compression: nothing left to compress");
                }
                if (r == 0 && busy) {
                        busy = false;
                        said_clean = true;
                        serve_logf("idle compression: done, %llu records, %llu -> %llu bytes in %.1f s",
                              (unsigned long long)sum.records, (unsigned long long)sum.bytes_in,
                              (unsigned long long)sum.bytes_out,
                              (double)(now_ns(CLOCK_MONOTONIC) - run_start) / 1e9);
                        sum = (st_compress_result){ 0 };
                }
                uint64_t pause;
                if (r == -EBUSY)
                        pause = 1000000000ull;
                else if (r < 0) {
                        serve_logf("idle compression stopped until the next start: %s%s%s (run "
                              "'stellar fsck')",
                              d.what ? d.what : "", d.what ? ": " : "", strerror(-r));
                        if (d.file[0])
                                serve_logf("  at %s offset %llu", d.file, (unsigned long long)d.offset);
                        break;
                } else if (r == 0)
                        pause = 5000000000ull;
                else /* within the bound: cpu / (wall + pause) <= percent */
                        pause = cpu * 100 / j->cpu_percent > wall ? cpu * 100 / j->cpu_percent - wall
                                                                   : 0;
                if (!nap(pause))
                        break;
        }
        return NULL;
}

int compress_start(st_store *s, unsigned cpu_percent) {
        if (cpu_percent == 0)
                return 0;
        the_job = (job){ .s = s, .cpu_percent = cpu_percent };
        stop = false;
        int r = pthread_create(&thread, NULL, compress_main, &the_job);
        if (r != 0)
                return -r;
        running = true;
        return 0;
}

void compress_stop(void) {
        if (!running)
                return;
        pthread_mutex_lock(&lock);
        stop = true;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        pthread_join(thread, NULL);
        running = false;
}

void compress_counters(uint64_t *in, uint64_t *out, uint64_t *records, uint64_t *dropped) {
        *in = total_in;
        *out = total_out;
        *records = total_records;
        *dropped = total_dropped;
}
