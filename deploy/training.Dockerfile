# syntax=docker/dockerfile:1
# The notespace training image: the service's dependencies plus torch (CPU) and transformers.
# Runs `notespace train ...` and `notespace export ...` against a mounted corpus; bundles it
# writes go to a volume the service reads. Build from the repository root:
#   docker build -f deploy/training.Dockerfile -t notespace-training .
# torch comes from the CPU wheel index: an unpinned resolve from PyPI pulls a multi-GB CUDA
# build. Trusts with a mirror point TORCH_INDEX_URL at it; deploy/build_images.sh serves a local
# torch-2.13.0+cpu wheel to the build as a one-package index on 127.0.0.1.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# A PyPI mirror inside the trust (RUNBOOK.md section 1): pip reads PIP_INDEX_URL.
ARG PIP_INDEX_URL=https://pypi.org/simple
RUN python -m pip install setuptools==84.2.1 wheel==0.48.0
RUN python -m venv /opt/venv
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# --no-deps: torch's own requirements are pinned in the requirements files below, so the torch
# index needs to hold nothing but torch.
RUN /opt/venv/bin/pip install --no-deps --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY deploy/requirements-service.txt deploy/requirements-training.txt /tmp/
RUN /opt/venv/bin/pip install \
      -r /tmp/requirements-service.txt -r /tmp/requirements-training.txt onnxruntime==1.32.0
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY training /src/training
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels /src \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/notespace-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import torch, transformers, training.export"

FROM ${PYTHON_IMAGE} AS training
RUN groupadd --system --gid 10001 notespace \
 && useradd --system --uid 10001 --gid notespace --create-home --home-dir /home/notespace \
      --shell /usr/sbin/nologin notespace
COPY --from=build /opt/venv /opt/venv
COPY alembic /app/alembic
COPY training/configs /app/training/configs
COPY deploy/entrypoint.py /app/deploy/entrypoint.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NOTESPACE_ALEMBIC_DIR=/app/alembic \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# /work holds the mounted corpus (read-only), runs/ and bundles/ (both volumes).
RUN mkdir -p /work/runs /bundles /corpus && chown notespace:notespace /work /work/runs /bundles
WORKDIR /work
USER 10001:10001
ENTRYPOINT ["python", "/app/deploy/entrypoint.py", "notespace"]
CMD ["--help"]
