/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP and S3 transfers on libcurl's multi interface: many requests in
 * flight over keep-alive connections (HTTP/2 multiplexed where the server
 * offers it), retries with exponential backoff on 5xx, 429, resets and
 * stalls, and bodies bounded as they arrive. S3 requests are signed with
 * AWS SigV4 by libcurl. Connections live in multi handles kept between
 * runs (libcurl does not share one connection cache between threads), so
 * each of the daemon's fetching threads reuses connections too.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/diag.h"
#include "../util/fs.h"
#include "target.h"

struct http_engine {
        char base[2048]; /* up to the tree's root, no trailing '/' */
        char prefix[1024]; /* s3: inside the bucket, "" or ending in '/' */
        bool s3;
        char sigv4[128];
        char userpwd[1024];
        char token_hdr[2200];
        char cainfo[1024]; /* a CA bundle to trust instead of the system's, or "" */
        unsigned parallel, retries, timeout_s, deadline_s;
        pthread_mutex_t idle_lock;
        CURLM *idle[16]; /* multis not in use, with their open connections */
        unsigned n_idle;
        _Atomic uint64_t n_retries;
};

typedef struct slot {
        CURL *e;
        struct curl_slist *hdrs;
        target_req q;
        uint8_t *buf;
        size_t cap, len;
        size_t body_at;
        bool active, waiting, too_big, bomb, stalled, overdue;
        uint64_t retry_at_ms;
        uint64_t moved, moved_ms, timeout_ms; /* stall detection */
        uint64_t started_ms, deadline_ms;     /* the whole request's deadline */
} slot;

#define RAMP_WINDOW_MS 150

/* A compressed answer (a manifest a server or CDN gzips) may inflate to
 * INFLATE_FREE bytes, and past that to INFLATE_RATIO_MAX times the bytes
 * received. Manifests gzip to about half (their hashes are random hex); one
 * whose chunks are all the same does 16x with gzip -9 and 51x with zstd
 * -19. Deflate can do 1000x: without this, 2 MB of gzip would fill the
 * whole JSON_MANIFEST_MAX (384 MiB) before being refused. */
#define INFLATE_FREE (16u << 20)
#define INFLATE_RATIO_MAX 128u

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *env(const char *a, const char *b) {
        const char *v = getenv(a);
        if ((!v || !*v) && b)
                v = getenv(b);
        return v && *v ? v : NULL;
}

static int parse_s3(http_engine *h, const char *url, st_diag *reterr) {
        const char *bucket = url + 5, *slash = strchr(bucket, '/');
        size_t blen = slash ? (size_t)(slash - bucket) : strlen(bucket);
        if (blen == 0 || blen > 63)
                return st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "s3:// URL without a bucket",
                                    -EINVAL);
        char b[64];
        memcpy(b, bucket, blen);
        b[blen] = 0;
        const char *prefix = slash ? slash + 1 : "";
        size_t plen = strlen(prefix);
        while (plen && prefix[plen - 1] == '/')
                plen--;
        if (plen + 2 > sizeof h->prefix)
                return st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "prefix too long", -EINVAL);
        snprintf(h->prefix, sizeof h->prefix, "%.*s%s", (int)plen, prefix, plen ? "/" : "");
        const char *region = env("AWS_REGION", "AWS_DEFAULT_REGION");
        if (!region)
                region = "us-east-1";
        char def[256];
        snprintf(def, sizeof def, "https://s3.%s.amazonaws.com", region);
        const char *ep = env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
        if (!ep)
                ep = def;
        size_t elen = strlen(ep);
        while (elen && ep[elen - 1] == '/')
                elen--;
        const char *style = env("STELLAR_S3_STYLE", NULL);
        if (style && strcmp(style, "path") && strcmp(style, "virtual"))
                return st_diag_fail(reterr, "STELLAR_S3_STYLE", ST_DIAG_NO_OFFSET,
                                    "must be 'path' or 'virtual'", -EINVAL);
        if (style && !strcmp(style, "virtual")) {
                const char *host = strstr(ep, "://");
                if (!host || (size_t)(host - ep) + 3 > elen)
                        return st_diag_fail(reterr, ep, ST_DIAG_NO_OFFSET, "bad endpoint URL",
                                            -EINVAL);
                host += 3;
                snprintf(h->base, sizeof h->base, "%.*s%s.%.*s", (int)(host - ep), ep, b,
                         (int)(elen - (size_t)(host - ep)), host);
        } else
                snprintf(h->base, sizeof h->base, "%.*s/%s", (int)elen, ep, b);
        const char *key = env("AWS_ACCESS_KEY_ID", NULL), *secret = env("AWS_SECRET_ACCESS_KEY", NULL);
        if (key && secret) {
                snprintf(h->sigv4, sizeof h->sigv4, "aws:amz:%s:s3", region);
                snprintf(h->userpwd, sizeof h->userpwd, "%s:%s", key, secret);
                const char *tok = env("AWS_SESSION_TOKEN", NULL);
                if (tok)
                        snprintf(h->token_hdr, sizeof h->token_hdr, "x-amz-security-token: %s", tok);
        } /* else unsigned requests: a public bucket */
        h->s3 = true;
        return 0;
}

int http_open(const char *url, const st_transfer_opts *o, http_engine **ret, st_diag *reterr) {
        pthread_once(&curl_once, curl_init_once);
        http_engine *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->parallel = o && o->parallel ? o->parallel : REMOTE_PARALLEL_DEFAULT;
        if (h->parallel > REMOTE_PARALLEL_MAX)
                h->parallel = REMOTE_PARALLEL_MAX;
        h->retries = o && o->retries ? o->retries : 5;
        h->timeout_s = o && o->timeout_s ? o->timeout_s : 20;
        h->deadline_s = o && o->deadline_s ? o->deadline_s : REMOTE_DEADLINE_DEFAULT;
        int r = 0;
        const char *ca = env("STELLAR_CA_BUNDLE", "CURL_CA_BUNDLE");
        if (!ca && !strncmp(url, "s3://", 5))
                ca = env("AWS_CA_BUNDLE", NULL);
        if (ca)
                snprintf(h->cainfo, sizeof h->cainfo, "%s", ca);
        if (!strncmp(url, "s3://", 5))
                r = parse_s3(h, url, reterr);
        else {
                size_t n = strlen(url);
                while (n && url[n - 1] == '/')
                        n--;
                if (n >= sizeof h->base)
                        r = st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "URL too long", -EINVAL);
                else
                        snprintf(h->base, sizeof h->base, "%.*s", (int)n, url);
        }
        pthread_mutex_init(&h->idle_lock, NULL);
        if (r < 0) {
                http_close(h);
                return r;
        }
        *ret = h;
        return 0;
}

http_engine *http_close(http_engine *h) {
        if (!h)
                return NULL;
        for (unsigned i = 0; i < h->n_idle; i++)
                curl_multi_cleanup(h->idle[i]);
        pthread_mutex_destroy(&h->idle_lock);
        free(h);
        return NULL;
}

bool http_is_s3(const http_engine *h) {
        return h->s3;
}

const char *http_s3_prefix(const http_engine *h) {
        return h->prefix;
}

uint64_t http_retries(const http_engine *h) {
        return h->n_retries;
}

void http_url(const http_engine *h, const char *key, char *out, size_t out_len) {
        if (key[0] == '?') { /* the bucket itself, with a query */
                snprintf(out, out_len, "%s/%s", h->base, key);
                return;
        }
        size_t k = (size_t)snprintf(out, out_len, "%s/", h->base);
        char path[6000];
        snprintf(path, sizeof path, "%s%s", h->prefix, key);
        if (k < out_len)
                percent_encode(path, "/", out + k, out_len - k);
}

void percent_encode(const char *in, const char *keep, char *out, size_t out_len) {
        size_t k = 0;
        for (const char *p = in; *p && k + 4 < out_len; p++) {
                unsigned char c = (unsigned char)*p;
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    strchr("-_.~", c) || strchr(keep, c))
                        out[k++] = (char)c;
                else
                        k += (size_t)snprintf(out + k, 4, "%%%02X", c);
        }
        if (out_len)
                out[k] = 0;
}

/* Bodies arrive in pieces of up to 16 KiB (inflated ones too, as libcurl
 * inflates them): each is checked against the limits before it is kept. */
static size_t on_write(char *data, size_t size, size_t n, void *u) {
        slot *sl = u;
        size_t len = size * n;
        if (sl->len + len > sl->q.max_len) {
                sl->too_big = true;
                return 0; /* aborts the transfer */
        }
        if (sl->len + len > INFLATE_FREE) {
                curl_off_t wire = 0; /* body bytes received, before inflating */
                if (curl_easy_getinfo(sl->e, CURLINFO_SIZE_DOWNLOAD_T, &wire) == CURLE_OK &&
                    (uint64_t)(sl->len + len) > (uint64_t)wire * INFLATE_RATIO_MAX) {
                        sl->too_big = sl->bomb = true;
                        return 0;
                }
        }
        if (st_buf_grow_max(&sl->buf, &sl->cap, sl->len + len, sl->q.max_len) < 0)
                return 0;
        memcpy(sl->buf + sl->len, data, len);
        sl->len += len;
        return len;
}

static int on_progress(void *u, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        (void)dltotal;
        (void)ultotal;
        slot *sl = u;
        uint64_t moved = (uint64_t)dlnow + (uint64_t)ulnow, t = now_ms();
        if (t - sl->started_ms > sl->deadline_ms) {
                sl->overdue = true;
                return 1; /* abort: CURLE_ABORTED_BY_CALLBACK */
        }
        if (moved != sl->moved) {
                sl->moved = moved;
                sl->moved_ms = t;
        } else if (t - sl->moved_ms > sl->timeout_ms) {
                sl->stalled = true;
                return 1; /* abort: CURLE_ABORTED_BY_CALLBACK */
        }
        return 0;
}

static size_t on_read(char *out, size_t size, size_t n, void *u) {
        slot *sl = u;
        size_t left = sl->q.body_len - sl->body_at, len = size * n;
        if (len > left)
                len = left;
        memcpy(out, (const uint8_t *)sl->q.body + sl->body_at, len);
        sl->body_at += len;
        return len;
}

static int slot_start(http_engine *h, CURLM *m, slot *sl) {
        if (!sl->e && !(sl->e = curl_easy_init()))
                return -ENOMEM;
        CURL *e = sl->e;
        curl_easy_reset(e);
        curl_slist_free_all(sl->hdrs);
        sl->hdrs = NULL;
        sl->len = 0;
        sl->body_at = 0;
        sl->too_big = sl->bomb = false;
        sl->q.attempts++;
        char url[8192];
        http_url(h, sl->q.key, url, sizeof url);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, sl);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
        if (h->cainfo[0])
                curl_easy_setopt(e, CURLOPT_CAINFO, h->cainfo);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)h->timeout_s);
        /* A stall is no byte either way for timeout_s (curl's low-speed
         * check averages over seconds more than that). A byte now and then
         * is no stall, so each attempt also has a deadline (curl calls the
         * progress callback about once a second even when nothing moves). */
        sl->started_ms = sl->moved_ms = now_ms();
        sl->moved = 0;
        sl->stalled = false;
        sl->overdue = false;
        sl->timeout_ms = (uint64_t)h->timeout_s * 1000u;
        sl->deadline_ms = (uint64_t)h->deadline_s * 1000u;
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, sl);
        if (sl->q.op == TARGET_GET)
                curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)sl->q.max_len);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "stellar/" "0.1");
        /* a server or CDN may gzip manifests; blobs are zstd already */
        if (sl->q.op == TARGET_GET && strncmp(sl->q.key, "blobs/", 6) != 0)
                curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, sl);
        struct curl_slist *hl = NULL;
        /* No 100-continue round trip on PUTs. Not for S3: libcurl 7.88
         * signs the empty header it then does not send (403). */
        if (!h->s3)
                hl = curl_slist_append(hl, "Expect:");
        if (h->s3) {
                hl = curl_slist_append(hl, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
                if (h->token_hdr[0])
                        hl = curl_slist_append(hl, h->token_hdr);
                if (h->sigv4[0]) {
                        curl_easy_setopt(e, CURLOPT_AWS_SIGV4, h->sigv4);
                        curl_easy_setopt(e, CURLOPT_USERPWD, h->userpwd);
                }
        }
        if (!hl)
                return -ENOMEM;
        sl->hdrs = hl;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
        if (sl->q.op == TARGET_PUT) {
                curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(e, CURLOPT_READDATA, sl);
                curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)sl->q.body_len);
        }
        if (curl_multi_add_handle(m, e) != CURLM_OK)
                return -ENOMEM;
        sl->active = true;
        sl->waiting = false;
        return 0;
}

/* What a finished transfer means: 0, a final error, or 1 (try again). */
static int classify(slot *sl, CURLcode cc, long status) {
        sl->q.status = status;
        if (cc == CURLE_OK) {
                if (status >= 200 && status < 300)
                        return 0;
                if (status == 404 || status == 410)
                        return -ENOENT;
                if (status == 401 || status == 403)
                        return -EACCES;
                if (status == 429 || status >= 500)
                        return 1;
                return -EPROTO;
        }
        switch (cc) {
        case CURLE_WRITE_ERROR:
                return sl->too_big ? -EFBIG : -ENOMEM;
        case CURLE_FILESIZE_EXCEEDED: /* refused by its Content-Length */
                return -EFBIG;
        case CURLE_ABORTED_BY_CALLBACK:
                return sl->stalled || sl->overdue ? 1 : -EIO;
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_COULDNT_CONNECT:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
                return 1;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        default:
                return -EIO;
        }
}

static int final_error(const slot *sl, CURLcode cc, long status) {
        if (cc == CURLE_ABORTED_BY_CALLBACK && sl->overdue)
                return -ETIME;
        if (cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_ABORTED_BY_CALLBACK)
                return -ETIMEDOUT;
        if (cc == CURLE_PARTIAL_FILE)
                return -EPIPE;
        if (cc == CURLE_COULDNT_CONNECT)
                return -ECONNREFUSED;
        if (cc != CURLE_OK)
                return -ECONNRESET;
        return status == 429 ? -EAGAIN : -EIO;
}

const char *remote_describe(int err) {
        switch (err) {
        case -ENOENT: return "not found";
        case -EACCES: return "access denied (401/403): check the credentials";
        case -EFBIG: return "the answer is larger than allowed";
        case -ETIMEDOUT: return "the server stalled (no bytes within the timeout), retries exhausted";
        case -ETIME: return "the request did not finish within the deadline, retries exhausted";
        case -ECONNREFUSED: return "cannot connect, retries exhausted";
        case -ECONNRESET: return "the connection broke, retries exhausted";
        case -EPIPE: return "the body ended before its length (truncated), retries exhausted";
        case -EAGAIN: return "the server kept answering 429 (slow down), retries exhausted";
        case -EPROTO: return "unexpected HTTP status";
        case -EHOSTUNREACH: return "cannot resolve the host";
        case -EBADMSG: return "the bytes received are not what their name says";
        default: return "request failed (server errors or I/O), retries exhausted";
        }
}

int http_run(http_engine *h, const target_io *io, st_diag *reterr) {
        pthread_mutex_lock(&h->idle_lock);
        CURLM *m = h->n_idle ? h->idle[--h->n_idle] : NULL;
        pthread_mutex_unlock(&h->idle_lock);
        if (!m)
                m = curl_multi_init();
        /* Slots are made on first use: most runs (one manifest, a lazy read)
         * need a few, not h->parallel. */
        slot **slots = calloc(h->parallel, sizeof *slots);
        if (!m || !slots) {
                curl_multi_cleanup(m);
                free(slots);
                return -ENOMEM;
        }
        curl_multi_setopt(m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
        bool exhausted = false;
        int r = 0;
        /* How many requests to keep in flight: start low and double while
         * that raises the rate by 15% or more (a long round trip needs many
         * in flight; on a fast link more only costs), up to h->parallel. */
        unsigned limit = h->parallel < 64 ? h->parallel : 64;
        bool growing = limit < h->parallel;
        uint64_t win_start = now_ms(), win_bytes = 0;
        double last_rate = 0;
        for (;;) {
                uint64_t now = now_ms(), wake = now + 200;
                unsigned busy = 0;
                bool started = false;
                if (growing && now - win_start >= RAMP_WINDOW_MS) {
                        double rate = (double)win_bytes / (double)(now - win_start);
                        if (rate > last_rate * 1.15) {
                                last_rate = rate;
                                limit = limit * 2 < h->parallel ? limit * 2 : h->parallel;
                                growing = limit < h->parallel;
                        } else
                                growing = false;
                        win_start = now;
                        win_bytes = 0;
                }
                for (unsigned i = 0; r == 0 && i < limit; i++) {
                        if (!slots[i]) {
                                if (exhausted)
                                        continue;
                                if (!(slots[i] = calloc(1, sizeof *slots[i]))) {
                                        r = -ENOMEM;
                                        break;
                                }
                        }
                        slot *sl = slots[i];
                        if (sl->waiting && sl->retry_at_ms <= now) {
                                r = slot_start(h, m, sl);
                                started = true;
                        }
                        else if (!sl->active && !sl->waiting && !exhausted) {
                                sl->q = (target_req){ 0 };
                                int k = io->next(io->ctx, &sl->q);
                                if (k < 0)
                                        r = k;
                                else if (k == 0)
                                        exhausted = true;
                                else {
                                        r = slot_start(h, m, sl);
                                        started = true;
                                }
                        }
                        if (sl->waiting && sl->retry_at_ms < wake)
                                wake = sl->retry_at_ms;
                        busy += sl->active || sl->waiting;
                }
                if (r < 0 || (busy == 0 && exhausted))
                        break;
                int running;
                curl_multi_perform(m, &running);
                CURLMsg *msg;
                int left;
                bool freed = false;
                while (r == 0 && (msg = curl_multi_info_read(m, &left))) {
                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        slot *sl;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
                        CURLcode cc = msg->data.result;
                        long status = 0;
                        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
                        curl_multi_remove_handle(m, msg->easy_handle);
                        sl->active = false;
                        freed = true;
                        int k = classify(sl, cc, status);
                        if (k == 1 && sl->q.attempts >= h->retries)
                                k = final_error(sl, cc, status);
                        if (k == 0 || k < 0) {
                                sl->q.err = k;
                                sl->q.data = sl->buf;
                                sl->q.len = sl->len;
                                win_bytes += sl->len + sl->q.body_len;
                                k = io->done(io->ctx, &sl->q);
                                if (k == 1 && sl->q.attempts >= h->retries)
                                        k = -EBADMSG;
                        }
                        if (k == 1) {
                                /* back off: 100 ms doubling, at most 5 s, +-25% */
                                uint64_t d = 100ull << (sl->q.attempts > 6 ? 6 : sl->q.attempts - 1);
                                if (d > 5000)
                                        d = 5000;
                                d = d * 3 / 4 + (uint64_t)rand() % (d / 2 + 1);
                                sl->waiting = true;
                                sl->retry_at_ms = now_ms() + d;
                                h->n_retries++;
                        } else if (k < 0) {
                                r = k;
                                if (reterr && !reterr->what) {
                                        char url[8192], where[256];
                                        http_url(h, sl->q.key, url, sizeof url);
                                        if (sl->q.status)
                                                snprintf(where, sizeof where, "%.200s (HTTP %ld)",
                                                         url, sl->q.status);
                                        else
                                                snprintf(where, sizeof where, "%.240s", url);
                                        (void)st_diag_fail(reterr, where, ST_DIAG_NO_OFFSET,
                                                           sl->bomb && k == -EFBIG
                                                                   ? "the compressed answer "
                                                                     "inflates over 128x (a "
                                                                     "decompression bomb?)"
                                                                   : remote_describe(k),
                                                           k);
                                }
                        }
                }
                if (r < 0)
                        break;
                /* Hand out the next requests at once; and give a handle just
                 * added a second perform (a reused connection may not send
                 * in the first) before sleeping. */
                if (freed || started)
                        continue;
                now = now_ms();
                int wait = wake > now ? (int)(wake - now) : 0;
                long ct = -1; /* what curl itself waits for (connects, its timers) */
                if (curl_multi_timeout(m, &ct) == CURLM_OK && ct >= 0 && ct < wait)
                        wait = (int)ct;
                if (wait > 0)
                        curl_multi_poll(m, NULL, 0, wait, NULL);
        }
        for (unsigned i = 0; i < h->parallel && slots[i]; i++) {
                slot *sl = slots[i];
                if (sl->active)
                        curl_multi_remove_handle(m, sl->e);
                if (sl->e)
                        curl_easy_cleanup(sl->e);
                curl_slist_free_all(sl->hdrs);
                free(sl->buf);
                free(sl);
        }
        free(slots);
        pthread_mutex_lock(&h->idle_lock);
        if (h->n_idle < 16) {
                h->idle[h->n_idle++] = m; /* keep its connections for the next run */
                m = NULL;
        }
        pthread_mutex_unlock(&h->idle_lock);
        curl_multi_cleanup(m);
        return r;
}
