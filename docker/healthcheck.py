"""Docker healthchecks of the Flink containers (docker-compose.yml), stdlib only.

    python docker/healthcheck.py jobmanager    # the REST API answers /overview
    python docker/healthcheck.py taskmanager   # this container's TaskManager is registered at the JobManager

Exit 0 = healthy, 1 = not (the reason on stderr).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from typing import Any

REST_PORT = 8081


def rest_get(host: str, path: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(f"http://{host}:{REST_PORT}{path}", timeout=timeout) as response:
        return json.loads(response.read())


def own_addresses() -> set[str]:
    """This container's IP addresses (a TaskManager registers with one of them)."""
    hostname = socket.gethostname()
    addresses = {hostname}
    try:
        addresses.update(str(info[4][0]) for info in socket.getaddrinfo(hostname, None))
    except OSError:
        pass
    return addresses


def taskmanager_registered(taskmanagers: list[dict[str, Any]], addresses: set[str]) -> bool:
    """A TaskManager's id (`ip:port-suffix`) or RPC path (`pekko.tcp://flink@ip:port/...`) names its address."""
    for taskmanager in taskmanagers:
        text = f"{taskmanager.get('id', '')} {taskmanager.get('path', '')}"
        if any(f"{address}:" in text or f"@{address}" in text for address in addresses):
            return True
    return False


def main(argv: list[str]) -> int:
    role = argv[0] if argv else ""
    try:
        if role == "jobmanager":
            rest_get("localhost", "/overview")
            return 0
        if role == "taskmanager":
            jobmanager = os.environ.get("JOB_MANAGER_RPC_ADDRESS", "jobmanager")
            taskmanagers = rest_get(jobmanager, "/taskmanagers").get("taskmanagers", [])
            if taskmanager_registered(taskmanagers, own_addresses()):
                return 0
            print(f"not registered at {jobmanager} yet", file=sys.stderr)
            return 1
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    print("usage: healthcheck.py jobmanager|taskmanager", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
