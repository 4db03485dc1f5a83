"""Local processes the dev tools supervise: identity (pid + kernel start time + argv), verified termination
(a reused pid is never signalled), spawning with a PID file and death with the parent, free ports.

Shared by the local stack (devstack.stack) and the standalone Flink cluster (devstack.flink_cluster)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StackError(RuntimeError):
    """A service failed to start or is not available."""


# --------------------------------------------------------------------------------------------
# process identity


def proc_start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot) or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces/parens: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return int(rest[19])  # field 22 overall


def proc_state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()[0]


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


@dataclass
class ProcRecord:
    """What we know about a process we started; stored as JSON in a PID file."""

    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str = ""

    def matches(self) -> bool:
        """The live process with this pid is still the one we started."""
        if proc_start_ticks(self.pid) != self.start_ticks:
            return False
        cmd = proc_cmdline(self.pid)
        return cmd is not None and cmd == self.argv

    def alive(self) -> bool:
        return self.matches() and pid_alive(self.pid)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "argv": self.argv,
            "log": self.log,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProcRecord:
        return cls(
            name=str(d["name"]),
            pid=int(d["pid"]),
            start_ticks=int(d["start_ticks"]),
            argv=[str(a) for a in d["argv"]],
            log=str(d.get("log", "")),
        )


def terminate_verified(
    rec: ProcRecord,
    popen: subprocess.Popen[bytes] | None = None,
    *,
    timeout: float = 10.0,
    kill_timeout: float = 5.0,
) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``, but only if ``rec`` still matches the live process.

    Returns True when the process is gone (or was never ours), False if it survived SIGKILL.
    """

    def gone() -> bool:
        if popen is not None:
            return popen.poll() is not None
        return not rec.alive()

    def wait(deadline: float) -> bool:
        while time.monotonic() < deadline:
            if gone():
                return True
            time.sleep(0.05)
        return gone()

    if gone():
        return True
    if not rec.matches():
        return True  # pid reused by someone else: not ours, never signal it
    for sig, tmo in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
        if not rec.matches():
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)
        if wait(time.monotonic() + tmo):
            return True
    return False


_PR_SET_PDEATHSIG = 1
_LIBC: Any = None
with contextlib.suppress(OSError):
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_SETPRIV = shutil.which("setpriv")  # util-linux (essential on Debian)


def spawn(
    name: str,
    argv: list[str],
    run_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    detach: bool = False,
) -> tuple[ProcRecord, subprocess.Popen[bytes]]:
    """Start ``argv`` with output to ``run_dir/<name>.log`` and write ``run_dir/<name>.pid``."""
    log_path = run_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {argv}\n".encode())
        log.flush()
        launch = list(argv)
        preexec: Callable[[], None] | None = None
        if not detach:
            # setpriv sets PR_SET_PDEATHSIG and execs argv in place (same pid, same cmdline),
            # avoiding preexec_fn in a possibly multi-threaded parent.
            if _SETPRIV is not None:
                launch = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
            else:
                preexec = _die_with_parent
        popen = subprocess.Popen(
            launch,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd or run_dir),
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=preexec,  # only when setpriv is missing
        )
    ticks = _exec_start_ticks(popen.pid, argv)
    rec = ProcRecord(name=name, pid=popen.pid, start_ticks=ticks, argv=list(argv), log=str(log_path))
    write_json_atomic(run_dir / f"{name}.pid", rec.to_json())
    return rec, popen


def _exec_start_ticks(pid: int, argv: list[str], timeout: float = 5.0) -> int:
    """Start time of ``pid`` once it runs ``argv`` (setpriv execs it right away); -1 if the
    process already died (the caller then reports the log)."""
    deadline = time.monotonic() + timeout
    while True:
        ticks = proc_start_ticks(pid)
        if ticks is None or not pid_alive(pid):
            return -1
        if proc_cmdline(pid) == argv or time.monotonic() > deadline:
            return ticks
        time.sleep(0.005)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A free port BELOW the kernel's ephemeral range.

    A port from bind(0) is ephemeral: between our check and the service's bind, the kernel may hand it
    to any outgoing connection or to a server bound to port 0 (Flink's blob server, a TaskManager),
    which made services fail with "address in use". Ports below the range are never handed out.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(max(1024, low - 12000), low))
    random.SystemRandom().shuffle(candidates)
    for port in candidates[:500]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # crowded machine: fall back to the kernel
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: str | Path, n: int = 30) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])
