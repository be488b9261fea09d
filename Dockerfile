# The sweep image: `sweep worker` (one container per GPU) and `sweep dashboard`.
# It installs the project the way the README does: a venv, torch first, then `pip install -e .`.
# On Linux x86-64, torch from PyPI is the CUDA build, so one image serves GPU and CPU hosts.
#   docker build -t sweep:latest .        (docker compose builds it for you)
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0

# PATH: the venv is active in every later RUN and in the containers (what `. .venv/bin/activate`
# does). NVIDIA_DRIVER_CAPABILITIES: CUDA, plus nvidia-smi for sweep.launch.gpu_slot.
ENV VIRTUAL_ENV=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /app

# torch alone first: the largest layer, rebuilt only when its version changes.
RUN python3 -m venv /app/.venv \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}"

# The dependencies next, from pyproject.toml and the package's __init__ only, so that editing the
# code does not reinstall them. The install is editable: the code copied below is what runs.
COPY pyproject.toml README.md ./
COPY sweep/__init__.py sweep/
RUN pip install --no-cache-dir -e .

COPY sweep/ sweep/
COPY studies/ studies/

# Run as a user, not root. /sweep is where compose mounts the shared volume (checkpoints, kept
# models, GPU locks): a new named volume takes this directory's owner.
RUN useradd --create-home --uid 1000 sweep \
    && mkdir -p /sweep/checkpoints /sweep/artifacts /sweep/gpu-locks \
    && chown -R sweep:sweep /sweep
USER 1000:1000

CMD ["sweep", "--help"]
