"""Launch a command under torchrun (2 CPU processes, gloo, loopback) for the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    """This environment, one thread, without the variables of an outer torchrun job."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def torchrun(*args: str, processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m torch.distributed.run ... args`; return the finished process.

    A launch whose worker was killed by a signal (a port taken between choosing and binding it, a
    socket race of the launcher) runs once more; any other failure, or a second one, is returned
    as it is, so the caller's assertions still see it.
    """
    for _ in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
               f"--master_port={free_port()}", "--master_addr=127.0.0.1", *args]
        proc = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode == 0 or "Signal" not in proc.stderr:
            break
    return proc
