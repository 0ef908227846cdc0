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
 * Ownership: the caller creates each easy handle, sets CURLOPT_PRIVATE to its
 * own pointer, adds it with http_add(); `done` is called once per added
 * handle that finishes, after which the handle is out of the multi and the
 * caller cleans it up. http_remove() takes a handle out early (cancel,
 * timeouts); `done` is then not called. http_free() needs no handle left. */
#ifndef CHATQ_HTTP_H
#define CHATQ_HTTP_H

#include <curl/curl.h>
#include <uv.h>

typedef struct http_client http_client;

typedef void (*http_done_cb)(CURL *easy, CURLcode result, void *priv);

http_client *http_new(uv_loop_t *loop, long max_connects, long max_host_connections,
                      http_done_cb done);
int http_add(http_client *hc, CURL *easy);
void http_remove(http_client *hc, CURL *easy);
/* Closes the multi handle; its uv handles are freed through uv_close. */
void http_free(http_client *hc);

#endif
