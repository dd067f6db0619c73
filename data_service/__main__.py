"""``python -m data_service``: serve with settings from the environment until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

from data_service.malloc import keep_freed_buffers
from data_service.server import serve
from simtrain.settings import Settings

# Streams in flight get this long to finish after a stop signal.
GRACE_S = 5.0


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_freed_buffers()
    settings = Settings()
    server, port = serve(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"data_service listening on {settings.data_service_host}:{port}", flush=True)
    stop.wait()
    server.stop(GRACE_S).wait()


if __name__ == "__main__":
    main()
