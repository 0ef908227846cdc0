/* http.c — curl multi on libuv, and the pool of easy handles; see http.h.
 *
 * Socket contexts: each socket libcurl wants watched gets an http_sock (a
 * uv_poll_t) stored with curl_multi_assign(), so the next callback for that
 * socket finds it. When libcurl is done with a socket (CURL_POLL_REMOVE) the
 * poll handle is stopped and closed; its memory is freed in the close
 * callback, as libuv requires. */
#include "worker/http.h"

#include <stdlib.h>

#include "common/buf.h"
#include "common/log.h"

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    http_done_cb done;
    CURL **pool;    /* idle easy handles */
    int npool;
    int pool_max;
};

typedef struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    http_client *hc;
} http_sock;

static void http_check_done(http_client *hc) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(hc->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        void *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&priv);
        curl_multi_remove_handle(hc->multi, easy);
        hc->done(easy, res, priv);
    }
}

static void http_on_poll(uv_poll_t *p, int status, int events) {
    http_sock *s = p->data;
    int flags = 0;
    int running;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(s->hc->multi, s->fd, flags, &running);
    http_check_done(s->hc);
}

static void http_on_timeout(uv_timer_t *t) {
    http_client *hc = t->data;
    int running;
    curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_check_done(hc);
}

static int http_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    http_client *hc = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&hc->timer);
    else /* 0 means "as soon as possible": the next loop iteration, never now */
        uv_timer_start(&hc->timer, http_on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void http_on_sock_closed(uv_handle_t *h) { free(h->data); }

static int http_socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp) {
    http_client *hc = userp;
    http_sock *s = socketp;
    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, http_on_sock_closed);
            curl_multi_assign(hc->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->hc = hc;
        s->poll.data = s;
        if (uv_poll_init_socket(hc->loop, &s->poll, fd) != 0) {
            log_error("http_poll_failed", "fd=%d", (int)fd);
            free(s);
            return -1;
        }
        curl_multi_assign(hc->multi, fd, s);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT) events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, http_on_poll);
    return 0;
}

http_client *http_new(uv_loop_t *loop, long max_connects, long max_host_connections,
                      int pool_max, http_done_cb done) {
    http_client *hc = xcalloc(1, sizeof *hc);
    hc->loop = loop;
    hc->done = done;
    hc->pool_max = pool_max;
    hc->multi = curl_multi_init();
    if (!hc->multi) {
        free(hc);
        return NULL;
    }
    uv_timer_init(loop, &hc->timer);
    hc->timer.data = hc;
    curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
    curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
    curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
    curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
    curl_multi_setopt(hc->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Keep as many idle connections as we can have transfers, or bursts
     * would close and reopen connections instead of reusing them. */
    curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, max_connects);
    if (max_host_connections > 0)
        curl_multi_setopt(hc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host_connections);
    return hc;
}

CURL *http_easy_get(http_client *hc) {
    if (hc->npool > 0) {
        CURL *e = hc->pool[--hc->npool];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

void http_easy_put(http_client *hc, CURL *easy) {
    if (hc->npool >= hc->pool_max) {
        curl_easy_cleanup(easy);
        return;
    }
    if (!hc->pool) hc->pool = xcalloc((size_t)hc->pool_max, sizeof *hc->pool);
    hc->pool[hc->npool++] = easy;
}

CURLMcode http_add(http_client *hc, CURL *easy) { return curl_multi_add_handle(hc->multi, easy); }

void http_remove(http_client *hc, CURL *easy) { curl_multi_remove_handle(hc->multi, easy); }

static void http_on_timer_closed(uv_handle_t *h) { free(h->data); }

void http_free(http_client *hc) {
    for (int i = 0; i < hc->npool; i++) curl_easy_cleanup(hc->pool[i]);
    free(hc->pool);
    hc->pool = NULL;
    hc->npool = 0;
    curl_multi_cleanup(hc->multi); /* closes sockets: REMOVE callbacks close polls */
    uv_timer_stop(&hc->timer);
    uv_close((uv_handle_t *)&hc->timer, http_on_timer_closed);
}
