# StreamLedger's image: one image, every process (`streamledger process | project | api | ...`).
# docker-compose.yml builds it and runs one service per process; see
# docs/decisions/0014-compose-stack.md.
#
#   docker build -t streamledger:local .
#   docker run --rm streamledger:local --help

# Build stage: install the package and its pinned dependencies (constraints.txt, the same pins CI
# uses) into a virtual environment; the runtime stage copies only that environment.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/streamledger
WORKDIR /src
COPY . .
RUN /opt/streamledger/bin/pip install -c constraints.txt .

FROM python:3.11-slim
ENV PATH=/opt/streamledger/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STREAMLEDGER_HOME=/home/streamledger/.streamledger \
    STREAMLEDGER_METRICS_HOST=0.0.0.0
COPY --from=build /opt/streamledger /opt/streamledger
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/streamledger \
        --shell /usr/sbin/nologin streamledger
USER streamledger
WORKDIR /home/streamledger
# 8080: `streamledger api` (with its /metrics); 9400: the other services' /metrics, /healthz,
# /readyz (the metrics_port setting), on every address in the container (metrics_host).
EXPOSE 8080 9400
ENTRYPOINT ["streamledger"]
CMD ["--help"]
