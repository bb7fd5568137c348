# GPU trainer image: TensorFlow's CUDA build (CUDA and cuDNN from NVIDIA's pinned
# wheels); the node's driver comes from GKE's NVIDIA device plugin.
# Build from the repository root: docker build -f images/gpu.Dockerfile .
FROM python:3.11.11-slim-bookworm

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
RUN pip install --require-hashes -r requirements-gpu.lock

COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
# The project itself: its dependencies are all in the lock above.
# hadolint ignore=DL3013
RUN pip install --no-deps . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin runner

USER 10001
WORKDIR /home/runner
