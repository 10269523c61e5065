# syntax=docker/dockerfile:1
# The notespace service image: ONNX Runtime + OpenVINO (the faster CPU runtime, picked by
# NOTESPACE_RUNTIME=auto) + tokenizers + FAISS, no torch, no transformers,
# no compilers. Build from the repository root (docker-compose.yml does):
#   docker build -f deploy/service.Dockerfile -t notespace-service .
#   docker build -f deploy/service.Dockerfile --build-arg ONNXRUNTIME="onnxruntime-gpu[cuda,cudnn]==1.31.1" -t notespace-service-gpu .
# or, with podman, build and check it from the inside: deploy/build_images.sh (make images).
# (A plain `podman build` needs --format docker: the OCI format drops the HEALTHCHECK.)
# Versions come from deploy/requirements-service.txt (deploy/lock_requirements.py writes it).
# For a reproducible base, pin the digest too: PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# A PyPI mirror inside the trust (RUNBOOK.md section 1): pip reads PIP_INDEX_URL.
ARG PIP_INDEX_URL=https://pypi.org/simple
# The build backend lives outside the runtime venv, so it never reaches the final stage.
RUN python -m pip install setuptools==84.2.1 wheel==0.48.0
RUN python -m venv /opt/venv
COPY deploy/requirements-service.txt /tmp/requirements-service.txt
# onnxruntime (CPU) or onnxruntime-gpu: both provide the `onnxruntime` module, so exactly one.
ARG ONNXRUNTIME=onnxruntime==1.32.0
RUN /opt/venv/bin/pip install -r /tmp/requirements-service.txt "${ONNXRUNTIME}"
COPY pyproject.toml README.md /src/
COPY service /src/service
COPY training /src/training
# --no-deps: every dependency is pinned above (and pip must not add CPU onnxruntime beside -gpu).
# `pip check` fails the build if the pins leave a requirement unmet, except the one it cannot
# know: onnxruntime-gpu provides the `onnxruntime` that notespace requires.
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels /src \
 && /opt/venv/bin/pip install --no-deps /tmp/wheels/notespace-*.whl \
 && { /opt/venv/bin/pip check || true; } \
    | grep -vE '^(No broken requirements found\.|notespace .* requires onnxruntime, which is not installed\.)$' \
    | { ! grep .; } \
 && /opt/venv/bin/pip uninstall --yes pip \
 && /opt/venv/bin/python -c "import service.app, service.cli"

FROM ${PYTHON_IMAGE} AS service
RUN groupadd --system --gid 10001 notespace \
 && useradd --system --uid 10001 --gid notespace --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin notespace
COPY --from=build /opt/venv /opt/venv
# onnxruntime-gpu's CUDA/cuDNN come as pip wheels (site-packages/nvidia/*/lib): let the dynamic
# loader find them. Nothing to do (an empty file) in the CPU image.
RUN find /opt/venv -type d -path '*/site-packages/nvidia/*/lib' > /etc/ld.so.conf.d/notespace-nvidia.conf \
 && ldconfig \
 && mkdir -p /var/lib/notespace/index /bundles \
 && chown notespace:notespace /var/lib/notespace /var/lib/notespace/index
# Migrations: the installed package is not beside the source tree, so name the folder.
COPY alembic /app/alembic
COPY deploy/entrypoint.py /app/deploy/entrypoint.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NOTESPACE_ALEMBIC_DIR=/app/alembic \
    NOTESPACE_HOST=0.0.0.0 \
    NOTESPACE_PORT=8000 \
    NOTESPACE_BUNDLE_PATH=/bundles/all-MiniLM-L6-v2 \
    NOTESPACE_INDEX_DIR=/var/lib/notespace/index
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
ENTRYPOINT ["python", "/app/deploy/entrypoint.py"]
CMD ["notespace", "serve"]
