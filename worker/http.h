/* http.h — libcurl's multi interface driven by a libuv loop.
 *
 * The canonical pattern of curl's docs/examples/multi-uv.c: libcurl tells us
 * through CURLMOPT_SOCKETFUNCTION which sockets to watch (a uv_poll_t each)
 * and through CURLMOPT_TIMERFUNCTION when to wake it (one uv_timer_t); we
 * hand events back with curl_multi_socket_action() and then drain
 * curl_multi_info_read(), calling `done` for each finished transfer.
 *
 * One http_client per worker, so every transfer shares one connection pool:
 * keep-alive connections are reused, and HTTP/2 streams are multiplexed on
 * one connection when the upstream offers HTTP/2 (CURLPIPE_MULTIPLEX).
 *
 * Easy handles come from the client's pool: curl_easy_init() allocates and
 * sets up a large struct, so handles are reused (curl_easy_reset) rather
 * than made for every request. The pool keeps at most `pool_max` idle
 * handles, the most that can be in use at once.
 *
 * Ownership: the client owns the handles it hands out. The caller takes one
 * with http_easy_get(), sets it up (CURLOPT_PRIVATE to its own pointer), adds
 * it with http_add(); `done` is called once per added handle that finishes,
 * after which the handle is out of the multi. http_remove() takes a handle
 * out early (cancel, timeouts); `done` is then not called. Either way the
 * caller gives the handle back with http_easy_put(). http_free() needs every
 * handle given back; it frees the pool. */
#ifndef CHATQ_HTTP_H
#define CHATQ_HTTP_H

#include <curl/curl.h>
#include <uv.h>

typedef struct http_client http_client;

/* priv: what the caller set as the handle's CURLOPT_PRIVATE (http does not
 * know its type). */
typedef void (*http_done_cb)(CURL *easy, CURLcode result, void *priv);

/* NULL when curl_multi_init() fails. */
http_client *http_new(uv_loop_t *loop, long max_connects, long max_host_connections,
                      int pool_max, http_done_cb done);
/* A handle from the pool (reset) or a new one; NULL when curl cannot make one. */
CURL *http_easy_get(http_client *hc);
/* Takes a handle back (it must not be in the multi): pooled or cleaned up. */
void http_easy_put(http_client *hc, CURL *easy);
/* Starts the transfer of easy: CURLM_OK, or curl's reason it cannot
 * (curl_multi_strerror() says it in words). */
CURLMcode http_add(http_client *hc, CURL *easy);
void http_remove(http_client *hc, CURL *easy);
/* Closes the multi handle; its uv handles are freed through uv_close. */
void http_free(http_client *hc);

#endif
