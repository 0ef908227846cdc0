/* http.c — curl multi on libuv, and the pool of easy handles; see http.h.
 *
 * Socket contexts: each socket libcurl wants watched gets an http_sock (a
 * uv_poll_t) stored with curl_multi_assign(), so the next callback for that
 * socket finds it, and in `socks`, by fd.
 *
 * System calls. libuv's uv_poll_start() costs an epoll_ctl DEL and an ADD
 * even when the events do not change, uv_poll_stop() a DEL, and a new handle
 * an ADD and a DEL to probe the fd: closing the handle when a request ended
 * and making a new one for the next request on the same connection cost
 * about five epoll_ctl calls a request. So:
 *   - a handle is started only when the events it watches change;
 *   - when libcurl is done with a socket for now (CURL_POLL_REMOVE: its
 *     connection went back to curl's pool) the handle stays, "idle", still
 *     watching for reading only: the next request on that connection finds
 *     it by fd, watching what it needs already. If an idle socket becomes
 *     readable (the server closed it), the handle stops watching it; curl
 *     finds the connection dead when it next looks.
 *   - the handle is closed when curl closes the socket
 *     (CURLOPT_CLOSESOCKETFUNCTION, set on every easy handle): first the
 *     handle, so that libuv forgets the fd, then the fd. Its memory is freed
 *     in the close callback, as libuv requires. */
#include "worker/http.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    struct http_sock **socks; /* by fd: the poll handle of each socket (stopped when idle) */
    int nsocks;               /* entries in socks */
};

typedef struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    http_client *hc;
    int events; /* what the handle watches now (UV_READABLE...), 0 = stopped */
    int idle;   /* curl does not watch the socket now (a pooled connection) */
} http_sock;

static void http_on_poll(uv_poll_t *p, int status, int events);

/* Has s watch `events` (0 = nothing), with no system call when it does so
 * already. */
static void http_sock_watch(http_sock *s, int events) {
    if (events == s->events) return;
    s->events = events;
    if (events)
        uv_poll_start(&s->poll, events, http_on_poll);
    else
        uv_poll_stop(&s->poll);
}

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
    if (s->idle) { /* an idle connection was closed (or spoke): stop watching it */
        http_sock_watch(s, 0);
        return;
    }
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

static http_sock *http_sock_find(const http_client *hc, curl_socket_t fd) {
    return fd >= 0 && fd < hc->nsocks ? hc->socks[fd] : NULL;
}

static void http_sock_set(http_client *hc, curl_socket_t fd, http_sock *s) {
    if (fd >= hc->nsocks) {
        int n = hc->nsocks ? hc->nsocks : 64;
        while (n <= fd) n *= 2;
        hc->socks = xrealloc(hc->socks, sizeof *hc->socks * (size_t)n);
        memset(hc->socks + hc->nsocks, 0, sizeof *hc->socks * (size_t)(n - hc->nsocks));
        hc->nsocks = n;
    }
    hc->socks[fd] = s;
}

/* Closes the poll handle of a socket (it is freed once libuv has closed it). */
static void http_sock_close(http_client *hc, http_sock *s) {
    http_sock_set(hc, s->fd, NULL);
    uv_close((uv_handle_t *)&s->poll, http_on_sock_closed); /* stops it */
}

/* curl closes a socket: its poll handle goes first, then the fd. */
static int http_on_closesocket(void *clientp, curl_socket_t fd) {
    http_client *hc = clientp;
    http_sock *s = http_sock_find(hc, fd);
    if (s) http_sock_close(hc, s);
    return close(fd);
}

static int http_socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp) {
    http_client *hc = userp;
    http_sock *s = socketp;
    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (s) { /* kept for the connection's next request (see the top) */
            s->idle = 1;
            http_sock_watch(s, s->events & UV_READABLE); /* an idle socket is always writable */
            curl_multi_assign(hc->multi, fd, NULL);
        }
        return 0;
    }
    if (!s && (s = http_sock_find(hc, fd)) != NULL) {
        curl_multi_assign(hc->multi, fd, s); /* a pooled connection at work again */
    } else if (!s) {
        s = xcalloc(1, sizeof *s);
        s->fd = fd;
        s->hc = hc;
        s->poll.data = s;
        if (uv_poll_init_socket(hc->loop, &s->poll, fd) != 0) {
            log_error("http_poll_failed", "fd=%d", (int)fd);
            free(s);
            return -1;
        }
        http_sock_set(hc, fd, s);
        curl_multi_assign(hc->multi, fd, s);
    }
    s->idle = 0;
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT) events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT) events |= UV_WRITABLE;
    http_sock_watch(s, events);
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
    CURL *e;
    if (hc->npool > 0) {
        e = hc->pool[--hc->npool];
        curl_easy_reset(e);
    } else {
        e = curl_easy_init();
        if (!e) return NULL;
    }
    /* a connection keeps the callback of the handle that opened it */
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, http_on_closesocket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, hc);
    return e;
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

static void http_on_timer_closed(uv_handle_t *h) {
    http_client *hc = h->data;
    free(hc->socks);
    free(hc);
}

void http_free(http_client *hc) {
    for (int i = 0; i < hc->npool; i++) curl_easy_cleanup(hc->pool[i]);
    free(hc->pool);
    hc->pool = NULL;
    hc->npool = 0;
    curl_multi_cleanup(hc->multi); /* closes the pooled connections: their polls go too */
    for (int fd = 0; fd < hc->nsocks; fd++) /* any curl closed without telling */
        if (hc->socks[fd]) http_sock_close(hc, hc->socks[fd]);
    uv_timer_stop(&hc->timer);
    uv_close((uv_handle_t *)&hc->timer, http_on_timer_closed);
}
