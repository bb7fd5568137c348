# GPU trainer image: TensorFlow's CUDA build (CUDA and cuDNN from NVIDIA's pinned
# wheels); the node's driver comes from GKE's NVIDIA device plugin.
# Built from images/docker-bake.json by `make images` (cnnvsmlp.images) and Cloud
# Build; the package index and its CA bundle come as build secrets, in no layer.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7:FROM names the BASE_IMAGE argument, whose default above is pinned
FROM ${BASE_IMAGE}
# checkov:skip=CKV_DOCKER_2:a KFP task runs to completion; Kubernetes ignores HEALTHCHECK

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64

WORKDIR /opt/cnnvsmlp

# requirements-gpu.lock is compiled with requirements.lock as constraints:
# every pin but TensorFlow's build is the one the Makefile installs.
COPY requirements-gpu.lock ./
RUN --mount=type=secret,id=pip_cert,required=false \
    --mount=type=secret,id=pip_index_url,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && if [ -s /run/secrets/pip_index_url ]; then \
         PIP_INDEX_URL="$(cat /run/secrets/pip_index_url)"; export PIP_INDEX_URL; fi \
    && pip install --require-hashes -r requirements-gpu.lock

# What the components import and nothing else: the library and the components,
# importable from /opt/cnnvsmlp/lib (no install step, so no pyproject and no
# pipelines/: the content tag hashes exactly these; cnnvsmlp.images).
COPY src/cnnvsmlp ./lib/cnnvsmlp
COPY components ./lib/cnnvsmlp_components
ENV PYTHONPATH=/opt/cnnvsmlp/lib
RUN python -m compileall -q lib \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin runner

USER 10001
WORKDIR /home/runner
