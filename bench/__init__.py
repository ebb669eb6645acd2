"""Benchmarks: learning vs forgetting against full finetuning and LoRA, speed, the service end to end,
load, what the memory keys on; the fact generator and the background-corpus writer they use; and
`report.py`, which writes every table and JSON file.

It may import `service`, `worker` and `model`; only `cli` imports it.
"""
