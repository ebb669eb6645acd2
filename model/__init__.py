"""The model core: the product-key memory and its retrofit, slot statistics and TF-IDF ranking, the
learners, snapshots, deltas and undo records, evaluation, and the shipped data (background corpus,
retention probe).

Only what serving and training need lives here. It imports no other package of this project (no
HTTP, no Redis, no benchmarks); `worker`, `service`, `bench` and `cli` build on it.
"""
