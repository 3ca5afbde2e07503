"""``corral status``: every deployment's state, from a running gateway's /admin/health."""

from __future__ import annotations

import argparse
import json

from corral.cli.client import AdminClient
from corral.cli.table import render

COLUMNS = (
    "name",
    "type",
    "state",
    "in_flight",
    "max_parallel",
    "latency_ms",
    "loaded_models",
    "last_check",
    "last_error",
)


def run(client: AdminClient, args: argparse.Namespace) -> int:
    data = client.get("/admin/health")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = []
    for d in data["deployments"]:
        checked = (d.get("last_check") or "")[11:19] or None
        error = d.get("last_error") if d.get("state") != "healthy" else None
        rows.append(
            [
                d["name"],
                d["type"],
                d["state"],
                d["in_flight"],
                d["max_parallel"],
                d["latency_ms"],
                d["loaded_models"],
                checked,
                (error or "")[:60] or None,
            ]
        )
    print(render(COLUMNS, rows))
    return 0
