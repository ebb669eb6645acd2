# One image for the worker and the API; installs exactly as the README's setup does.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SMFT_DATA_DIR=/data
RUN apt-get update && apt-get install -y --no-install-recommends redis-tools curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY model ./model
COPY worker ./worker
COPY service ./service
COPY bench ./bench
COPY cli ./cli
# SMFT_TORCH picks the torch build (default: the CPU wheel; e.g. "torch==2.13.0" from a CUDA index for GPUs).
ARG SMFT_TORCH=torch==2.13.0
# redis-server comes from Debian like on a bare machine; the compose file runs it in its own container.
RUN apt-get update && SMFT_TORCH="${SMFT_TORCH}" scripts/setup.sh && rm -rf /var/lib/apt/lists/*
ENV PATH=/app/.venv/bin:$PATH
VOLUME ["/data"]
EXPOSE 8000
CMD ["smft", "api", "--host", "0.0.0.0"]
