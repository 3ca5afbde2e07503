"""The sockets a supervisor makes once and its workers inherit, and the two pipes between them.

Why one shared socket (inherited file descriptors) rather than ``SO_REUSEPORT``: the
supervisor binds the data and admin ports once and keeps them for its whole life, so a worker
that dies or is restarted never closes the port while another worker serves (a client never
sees "connection refused" while a worker restarts), connections waiting in the accept queue are
taken by the other workers instead of being reset with the dying worker's own queue (what
``SO_REUSEPORT`` does: one queue per socket), port 0 and the printed address mean the same port
for every worker, and it works the same on every Unix. The kernel hands each new connection to
one worker blocked in ``accept``; a busy worker accepts less often, so the load spreads.

The supervisor only *binds* (``bind``): it never listens, so a connection is never queued where
no one accepts. The first worker that serves makes the socket listen (asyncio's and uvloop's
``create_server(sock=...)`` call ``listen``); until then a client is refused, which retrying
clients handle, rather than left hanging in an accept queue while the workers start. When no
worker is left alive (all died, restarts pending), the supervisor stops the listening
(``unlisten``): the connections still queued are reset, new ones are refused, and the next
worker that serves listens again on the same port.

The pipes: workers write their pid on the *ready* pipe when they listen (the supervisor
prints the addresses once they all do), and hold the read end of the *lifeline*, whose write
end only the supervisor holds: when the supervisor is gone (even killed with SIGKILL) the
lifeline reads as closed and the worker drains and exits, so no orphan keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

FDS_ENV = "CORRAL_WORKER_FDS"  # "data,admin,ready,lifeline": descriptors a worker inherits


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv4 or IPv6, as ``host`` says), not listening yet
    (connections are refused until a worker serves on it), blocking off. OSError if taken."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as socket.create_server
        sock.bind((host.strip("[]"), port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def unlisten(sock: socket.socket) -> bool:
    """Stop ``sock`` listening, keeping its port: connections still queued are reset, new ones
    are refused, until a worker listens again. Only when no worker holds it (no one else could
    listen in between). True if it was listening; OSError if the port was lost (another program
    took it meanwhile)."""
    if not sys.platform.startswith("linux") or not listening(sock):
        return False  # elsewhere shutdown() does not stop a listening socket: it keeps the queue
    address = sock.getsockname()
    sock.shutdown(socket.SHUT_RD)  # Linux: a listening socket goes back to closed, queue reset
    try:
        sock.bind(address)  # a port the kernel chose (port 0) is released with the listening
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: still bound (a port given), nothing to do
            raise
    return True


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a worker received from its supervisor."""

    data: socket.socket
    admin: socket.socket
    ready_fd: int
    lifeline_fd: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inherited | None:
        raw = env.get(FDS_ENV, "")
        if not raw:
            return None
        data, admin, ready, lifeline = (int(part) for part in raw.split(","))
        return cls(socket.socket(fileno=data), socket.socket(fileno=admin), ready, lifeline)

    def report_ready(self) -> None:
        """Tell the supervisor this worker listens (one short write, then the pipe is closed)."""
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, f"{os.getpid()}\n".encode())
        with contextlib.suppress(OSError):
            os.close(self.ready_fd)

    def watch_supervisor(self, loop: asyncio.AbstractEventLoop, gone: Callable[[], None]) -> None:
        """Call ``gone`` once the supervisor has exited (its lifeline end closed)."""

        def readable() -> None:
            try:
                chunk = os.read(self.lifeline_fd, 64)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(self.lifeline_fd)
                gone()

        os.set_blocking(self.lifeline_fd, False)
        loop.add_reader(self.lifeline_fd, readable)


def env_for(data: socket.socket, admin: socket.socket, ready_fd: int, lifeline_fd: int) -> dict[str, str]:
    return {FDS_ENV: f"{data.fileno()},{admin.fileno()},{ready_fd},{lifeline_fd}"}
