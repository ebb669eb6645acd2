"""The HTTP service: the FastAPI app and its routes, the inference engine and query batcher, the
OpenAI-compatible API (`openai/`), errors, metrics, and the processes `smft serve` supervises.
`python -m service` runs one API replica from SMFT_* variables. It answers; it never trains.

It may import `worker` and `model`.
"""
