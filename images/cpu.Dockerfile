# CPU image: data preparation, evaluation and comparison.
# Build from the repository root: docker build -f images/cpu.Dockerfile .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/cnnvsmlp

# requirements-cpu.lock is compiled with requirements.lock as constraints: the
# pins the Makefile installs, without the development tools.
COPY requirements-cpu.lock ./
RUN pip install --require-hashes -r requirements-cpu.lock

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
