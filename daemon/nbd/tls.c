/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS for NBD (proto.md, "TLS support"): after NBD_OPT_STARTTLS is
 * acknowledged the two sides run a TLS handshake on the socket and the rest
 * of the negotiation, and every request, goes inside it. GnuTLS, with PSK
 * (psktool's key file) and x509 server certificates, as nbdkit and qemu-nbd
 * offer them.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

struct nbd_tls_creds {
        gnutls_certificate_credentials_t x509;
        gnutls_psk_server_credentials_t psk;
};

void nbd_tls_creds_free(nbd_tls_creds *c) {
        if (!c)
                return;
        if (c->x509)
                gnutls_certificate_free_credentials(c->x509);
        if (c->psk)
                gnutls_psk_free_server_credentials(c->psk);
        free(c);
}

int nbd_tls_creds_new(const char *psk_file, const char *cert_dir, nbd_tls_creds **ret,
                      char *err, size_t err_len) {
        nbd_tls_creds *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        int r = 0;
        if (psk_file) {
                FILE *f = fopen(psk_file, "r"); /* GnuTLS reads it per handshake: check now */
                if (!f) {
                        r = -errno;
                        snprintf(err, err_len, "%s: %s", psk_file, strerror(errno));
                } else
                        fclose(f);
                if (r == 0 && (gnutls_psk_allocate_server_credentials(&c->psk) < 0 ||
                               gnutls_psk_set_server_credentials_file(c->psk, psk_file) < 0)) {
                        r = -EINVAL;
                        snprintf(err, err_len, "%s: not a PSK file (USERNAME:HEXKEY lines)", psk_file);
                }
        }
        if (r == 0 && cert_dir) {
                char cert[4096], key[4096];
                snprintf(cert, sizeof cert, "%s/server-cert.pem", cert_dir);
                snprintf(key, sizeof key, "%s/server-key.pem", cert_dir);
                int k = gnutls_certificate_allocate_credentials(&c->x509);
                if (k == 0)
                        k = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
                if (k < 0) {
                        r = -EINVAL;
                        snprintf(err, err_len, "%s: %s (server-cert.pem and server-key.pem)", cert_dir,
                                 gnutls_strerror(k));
                }
        }
        if (r < 0) {
                nbd_tls_creds_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int nbd_tls_start(conn *c) {
        const nbd_tls_creds *t = c->ctx->tls;
        gnutls_session_t s;
        if (gnutls_init(&s, GNUTLS_SERVER) < 0)
                return -ENOMEM;
        int k = gnutls_priority_set_direct(
                s, t->psk ? "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK" : "NORMAL", NULL);
        if (k == 0 && t->x509)
                k = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
        if (k == 0 && t->psk)
                k = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
        if (k < 0) {
                gnutls_deinit(s);
                return -EINVAL;
        }
        gnutls_transport_set_int(s, c->w.fd);
        gnutls_handshake_set_timeout(s, 30000);
        do
                k = gnutls_handshake(s);
        while (k < 0 && !gnutls_error_is_fatal(k) && k != GNUTLS_E_AGAIN);
        if (k < 0) {
                serve_logf("nbd %s: TLS handshake failed: %s", c->ctx->peer, gnutls_strerror(k));
                gnutls_deinit(s);
                return -EACCES;
        }
        c->w.tls = s;
        return 0;
}

void nbd_tls_end(conn *c) {
        if (!c->w.tls)
                return;
        (void)gnutls_bye(c->w.tls, GNUTLS_SHUT_WR);
        gnutls_deinit(c->w.tls);
        c->w.tls = NULL;
}
