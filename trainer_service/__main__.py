"""``python -m trainer_service``: run one trainer worker until SIGTERM or Ctrl-C."""

import logging
import signal

from simtrain.settings import Settings
from trainer_service.worker import Worker


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = Worker(Settings())
    # Finish the current step, checkpoint, hand the job back, exit 0.
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    print(f"trainer worker {worker.name} started", flush=True)
    worker.run_forever()


if __name__ == "__main__":
    main()
