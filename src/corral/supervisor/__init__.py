"""``corral serve --workers N``: one supervisor process and N worker processes on one host.

* ``count``: what ``--workers auto`` means (the CPUs this process may use, cgroup quota included);
* ``rules``: what N workers cannot do correctly without a shared store (refused at start);
* ``prepare``: the keys, migrations and checks done once before any worker starts;
* ``sockets``: the listening sockets the workers inherit, and the ready and lifeline pipes;
* ``supervisor``: starting, restarting (with back-off) and stopping the workers.

Each worker is an ordinary ``corral serve`` process that knows its place (``corral.identity``).
"""
