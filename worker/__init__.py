"""The training side and the Redis contract: `store.py` (the one door to Redis: keys, records, atomic
scripts), the training loop, the leader lease, the memory replica that follows published deltas, the
forgetting monitor, settings and logging. `python -m worker` runs one worker from SMFT_* variables.

It may import `model` only.
"""
