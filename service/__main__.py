"""`python -m service`: one API replica, configured by SMFT_* variables (how `smft serve`, the service
benchmark and the tests start it; people use `smft api`, which also takes flags)."""

from __future__ import annotations

from service.app import run_api
from service.settings import ApiSettings
from worker.logs import setup_logging

if __name__ == "__main__":
    settings = ApiSettings()
    setup_logging(settings.log_format)
    run_api(settings)
