"""`smft serve`, `smft api` and `smft worker`: every SMFT_* setting of the process is also a flag
(`SMFT_BATCH_FACTS=1` is `--batch-facts 1`), parsed by pydantic-settings from the settings classes."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic_settings import BaseSettings, CliSettingsSource

from service.settings import ApiSettings, ServeSettings
from worker.settings import WorkerSettings


def _settings_parser(sub: Any, name: str, cls: type[BaseSettings], help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=f"{help_text}. Flags override SMFT_* variables.")
    source = CliSettingsSource(cls, root_parser=parser, cli_kebab_case=True, cli_implicit_flags=True)
    parser.set_defaults(settings=lambda args: cls(_cli_settings_source=source(parsed_args=args)), serving=True)
    return parser


def _built(args: argparse.Namespace, what: str) -> Any:
    from pydantic import ValidationError

    try:
        return args.settings(args)
    except ValidationError as exc:  # a bad flag or variable: say which, without a traceback or the values
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"smft {what}: {problems}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from service.launcher import serve

    return serve(_built(args, "serve"))


def cmd_api(args: argparse.Namespace) -> int:
    from service.app import run_api

    run_api(_built(args, "api"))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.loop import run_worker

    run_worker(_built(args, "worker"), burst=args.burst)
    return 0


def register(sub: Any) -> None:
    _settings_parser(sub, "serve", ServeSettings, "Redis (private unless --redis-url), worker and API"
                     ).set_defaults(fn=cmd_serve)
    _settings_parser(sub, "api", ApiSettings, "one API replica").set_defaults(fn=cmd_api)
    worker = _settings_parser(sub, "worker", WorkerSettings, "the training worker")
    worker.add_argument("--burst", action="store_true", help="drain the queue, then exit")
    worker.set_defaults(fn=cmd_worker)
