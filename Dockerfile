# One image for every process of the stack: gateway, dataflow, migrations (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
# Every package of pyproject.toml (the `worktool` command is commands.cli); secrets (.env) stay out
# (.dockerignore) and come from the environment at run time.
COPY worktool ./worktool
COPY operators ./operators
COPY infra ./infra
COPY classifiers ./classifiers
COPY sinks ./sinks
COPY gateway ./gateway
COPY dataflows ./dataflows
COPY commands ./commands
COPY migrations ./migrations
COPY config ./config
RUN pip install .

# Not root; /data holds the gateway spool and the dataflow's recovery snapshots (a volume).
RUN useradd --create-home --uid 10001 worktool && mkdir -p /data && chown worktool /data
USER worktool
ENV WORKTOOL_DATA_DIR=/data \
    WORKTOOL_HTTP_HOST=0.0.0.0 \
    WORKTOOL_HTTP_PORT=8080

EXPOSE 8080 3030
CMD ["worktool", "gateway"]
