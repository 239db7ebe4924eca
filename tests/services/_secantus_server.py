"""Run a SecantusDB server with a chosen TTL sweep interval (run as a script).

`secantusd-py` 0.7.0b3 has no flag for the TTL sweep interval, and although
its TOML config accepts `[storage] ttl_sweep_seconds`, the CLI never passes
that value to the server, so expired documents would linger up to 60 s.
This mirrors the CLI's main() with `ttl_sweep_seconds` passed through.

Usage: python -P _secantus_server.py HOST PORT TTL_SWEEP_SECONDS
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
from types import FrameType

from secantus.server import SecantusDBServer  # type: ignore[import-untyped, unused-ignore]


def main(argv: list[str]) -> int:
    host, port, ttl_sweep = argv[0], int(argv[1]), float(argv[2])
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = SecantusDBServer(
        host=host,
        port=port,
        storage_path=":memory:",
        ttl_sweep_seconds=ttl_sweep,
        enable_test_commands=False,  # as the daemon does
    )

    def handle_signal(signum: int, frame: FrameType | None) -> None:
        # Closing the listening socket does not wake the thread blocked in
        # accept(), so stop() would wait 2 s for it; shutdown() does wake it.
        listener = getattr(server, "_socket", None)
        if isinstance(listener, socket.socket):
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
        server.stop()  # closes WiredTiger and removes the :memory: temp dir
        sys.exit(0)

    signal.signal(signal.SIGINT, handle_signal)
    signal.signal(signal.SIGTERM, handle_signal)
    server.start()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
