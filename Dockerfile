# corral's container image: `docker build -t corral .`, then
#   docker run -p 4000:4000 -e CORRAL_MASTER_KEY=... -v corral-data:/var/lib/corral corral --host 0.0.0.0
# docs/deploy.md has the whole story (Kubernetes, the secrets, the read-only root filesystem).
#
# Stage 1 builds corral's wheel and installs it with its dependencies into a virtual environment;
# stage 2 is the slim runtime: that environment, a non-root numeric user, nothing written outside
# CORRAL_HOME (mount a volume or an emptyDir there; the root filesystem can be read-only).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/corral \
 && /opt/corral/bin/python -m pip install /wheels/corral-*.whl \
 && /opt/corral/bin/python -m compileall -q /opt/corral/lib

FROM ${PYTHON_IMAGE} AS runtime
# uid/gid 10001: no clash with a host's own users; runAsNonRoot in Kubernetes needs a number.
ENV PATH=/opt/corral/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CORRAL_HOME=/var/lib/corral \
    CORRAL_HEALTHCHECK_URL=http://127.0.0.1:4000/healthz
RUN groupadd --system --gid 10001 corral \
 && useradd --system --uid 10001 --gid corral --home-dir /var/lib/corral --no-create-home \
      --shell /usr/sbin/nologin corral \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/corral
COPY --from=build /opt/corral /opt/corral
USER 10001:10001
WORKDIR /var/lib/corral
VOLUME ["/var/lib/corral"]
EXPOSE 4000 4001
# No curl in a slim image: Python asks /healthz (the data plane; set CORRAL_HEALTHCHECK_URL if
# server.port is not 4000).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen(os.environ['CORRAL_HEALTHCHECK_URL'], timeout=4); sys.exit(0 if r.status == 200 else 1)"]
ENTRYPOINT ["corral", "serve"]
CMD ["--host", "0.0.0.0"]
