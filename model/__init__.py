"""Model core: product-key memory, retrofitting, TF-IDF slot selection, learners, deltas.

No HTTP and no Redis here; `worker` and `service` build on this package.
"""
