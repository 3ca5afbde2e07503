"""A stand-in for ``corral serve`` under the real ``Supervisor``, for the socket tests.

``python fake_worker.py supervise DIR`` binds two loopback ports as ``corral serve --workers``
does (``corral.supervisor.sockets.bind``), prints ``ports <data> <admin>`` and supervises one
worker: this same file with ``work DIR``. A worker writes ``DIR/started-<pid>``, waits until
the test creates ``DIR/release-<pid>`` (so the test decides when it starts serving), then
serves as a real worker does: it makes the inherited sockets listen, reports ready, and
answers every connection to the data port with its pid.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from corral.supervisor.sockets import Inherited, bind
from corral.supervisor.supervisor import Supervisor

WAIT = 60.0  # a worker never released within this gives up


def supervise(directory: Path) -> int:
    data, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
    print(f"ports {data.getsockname()[1]} {admin.getsockname()[1]}", flush=True)
    command = [sys.executable, __file__, "work", str(directory)]
    supervisor = Supervisor(command, dict(os.environ), 1, data, admin, 1.0, tempfile.mkdtemp())
    return supervisor.run(lambda: print("ready", flush=True))


def work(directory: Path) -> int:
    inherited = Inherited.from_env(os.environ)
    assert inherited is not None
    (directory / f"started-{os.getpid()}").touch()
    deadline = time.monotonic() + WAIT
    while not (directory / f"release-{os.getpid()}").exists():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.01)  # the test's go-ahead: a file, polled with a deadline
    for sock in (inherited.admin, inherited.data):
        sock.setblocking(True)
        sock.listen(16)  # what asyncio's and uvloop's create_server(sock=...) do
    inherited.report_ready()
    while True:
        conn, _ = inherited.data.accept()
        with conn:
            conn.sendall(f"{os.getpid()}\n".encode())


if __name__ == "__main__":
    mode, where = sys.argv[1], Path(sys.argv[2])
    sys.exit(supervise(where) if mode == "supervise" else work(where))
