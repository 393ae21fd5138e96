"""Serve ChatLima with several daphne processes on one listening socket.

    python -m chatlima.serve --workers 2 -b 127.0.0.1 -p 8000

One daphne process runs one event loop, so it uses one core. This opens the socket once and starts
`--workers` daphne processes (each on uvloop: chatlima/worker.py) that all accept on it (daphne's
`--fd`); the kernel hands each new connection to one of them. A WebSocket stays with the process
that accepted it, and the consumer keeps no state shared between processes, so nothing else is
needed. Stopping this process (or any worker dying) stops them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

# Each worker is daphne on uvloop (chatlima/worker.py).
WORKER = [sys.executable, "-m", "chatlima.worker"]
# Each process's thread pool for the database work (daphne reads ASGI_THREADS; Python's default is
# cores + 4 = 6 here). The threads contend for one GIL with the event loop, and each handoff costs:
# under a burst of 100 streams a prepare took 7.5 ms of CPU in a thread against 3.2 ms alone. With
# 4, the burst's overhead to the first chunk (bench/peer_compare.py, two interleaved pairs) went
# from +768/+882 to +518/+663 ms over SSE, and its duration from +723/+838 to +585/+757 ms.
DB_THREADS = 4


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1)))
    parser.add_argument("--app", default="chatlima.asgi:application")
    args, daphne_args = parser.parse_known_args(argv)

    sock = listening_socket(args.bind, args.port)
    command = [*WORKER, "--fd", str(sock.fileno()), *daphne_args, args.app]
    env = {"ASGI_THREADS": str(DB_THREADS), **os.environ}  # an ASGI_THREADS given wins
    workers = [subprocess.Popen(command, pass_fds=(sock.fileno(),), env=env) for _ in range(max(1, args.workers))]
    sock.close()  # the workers hold it now

    stopping = []

    def stop(*_: object) -> None:
        stopping.append(True)
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(worker.poll() is None for worker in workers):
            time.sleep(0.2)
    finally:
        stop()
        deadline = time.monotonic() + 10
        for worker in workers:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
    # A worker still starting when we stopped it dies of the SIGTERM itself (before twisted handles
    # it): that is the stop we asked for, not a failure.
    asked = -signal.SIGTERM if stopping else None
    return max((0 if worker.returncode == asked else worker.returncode or 0) for worker in workers)


if __name__ == "__main__":
    sys.exit(main())
