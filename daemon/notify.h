/* notify.h — the systemd notify protocol, without libsystemd.
 *
 * systemd passes $NOTIFY_SOCKET, the path of a datagram socket ("@name" for
 * an abstract one); the service sends it newline-separated KEY=VALUE lines,
 * one datagram per message: READY=1, STATUS=..., WATCHDOG=1, RELOADING=1
 * with MONOTONIC_USEC=..., STOPPING=1. With no $NOTIFY_SOCKET every call is a
 * no-op, so chatqd runs the same outside systemd.
 *
 * notify_init() reads and then removes NOTIFY_SOCKET and the WATCHDOG_*
 * variables from the environment, so worker processes never talk to systemd
 * (NotifyAccess=main would reject them anyway). */
#ifndef CHATQ_NOTIFY_H
#define CHATQ_NOTIFY_H

#include <stdint.h>

typedef struct notify {
    int fd;                 /* -1 when not under systemd */
    char path[108];
    int abstract;           /* path is an abstract socket name */
    uint64_t watchdog_usec; /* 0 when no watchdog is asked for */
} notify;

void notify_init(notify *n);
/* Sends one message (e.g. "READY=1\nSTATUS=running"). Returns 0 or -1. */
int notify_send(notify *n, const char *msg);
/* READY=1 for reloads: RELOADING=1 plus MONOTONIC_USEC, as systemd wants. */
int notify_reloading(notify *n);
void notify_close(notify *n);

#endif
