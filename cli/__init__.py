"""The `smft` command, on top of everything: one module per group of subcommands (`run`: serve, api and
worker; `client`: teach and ask; `data`; `bench`), each registering its own parser.

It may import `bench`, `service`, `worker` and `model`; nothing imports it.
"""
