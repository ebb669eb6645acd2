"""The OpenAI-compatible API, laid out as vLLM does: `protocol` (pydantic requests, responses and stream
chunks), `serving` (the logic, holding the engine); the HTTP router is `service/routes/openai.py`."""
