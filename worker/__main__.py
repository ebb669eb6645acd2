"""`python -m worker [--burst]`: the training worker, configured by SMFT_* variables (how `smft serve`,
the service benchmark and the tests start it; people use `smft worker`, which also takes flags)."""

from __future__ import annotations

import argparse

from worker.logs import setup_logging
from worker.loop import run_worker
from worker.settings import WorkerSettings

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="drain the queue, then exit")
    args = parser.parse_args()
    settings = WorkerSettings()
    setup_logging(settings.log_format)
    run_worker(settings, burst=args.burst)
