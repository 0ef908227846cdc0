"""test_rconn.py — the Redis connection as seen from outside: chatqd's socket
to Redis is close-on-exec, so the workers it spawns do not inherit it.

hiredis 0.14 opens its sockets without FD_CLOEXEC; common/rconn.c sets the
flag. An inherited socket is the same open file in two processes: the test
compares the socket inodes of chatqd's TCP connections to Redis with those
a worker holds open."""

import os
import signal

from conftest import wait_for


def redis_socket_inodes(pid, redis_port):
    """Inodes of pid's TCP connections whose remote port is redis_port."""
    inodes = set()
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)  # header
        for line in f:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == redis_port:
                inodes.add(fields[9])
    return inodes & open_socket_inodes(pid)


def open_socket_inodes(pid):
    """Inodes of the sockets among pid's open file descriptors."""
    out = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            out.add(target[len("socket:["):-1])
    return out


def test_workers_do_not_inherit_the_daemon_redis_socket(cq):
    port = cq.redis_server.port
    daemon = cq.proc.pid
    mine = wait_for(lambda: redis_socket_inodes(daemon, port), 10,
                    what="chatqd's connection to Redis")
    # A worker spawned now certainly comes after chatqd's connection.
    before = cq.wait_workers(2)
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: (lambda p: p if len(p) == 2 and before[0] not in p else None)(cq.worker_pids()),
                     10, what="a replacement worker")
    fresh = [p for p in after if p not in before][0]
    # The worker's own connections are up once it has registered itself.
    wait_for(lambda: redis_socket_inodes(fresh, port), 10, what="the worker's connections")
    for pid in after:
        shared = open_socket_inodes(pid) & mine
        assert not shared, "worker %d holds chatqd's Redis socket(s) %s" % (pid, sorted(shared))
