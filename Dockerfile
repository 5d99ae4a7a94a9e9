# syntax=docker/dockerfile:1
# llm-oncall: the on-call sidecar. Build: docker build -t llm-oncall .
# Run:   docker run -p 9477:9477 -v llm-oncall-state:/var/lib/llm-oncall llm-oncall
# With a config file: ... -v $PWD/config.yaml:/etc/llm-oncall/config.yaml:ro \
#                         llm-oncall run --config /etc/llm-oncall/config.yaml

# ---- build: install the package and its dependencies into a virtualenv --------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first, sources after; `pip install .` builds the wheel and installs it.
COPY pyproject.toml README.md ./
COPY config ./config
COPY correlator ./correlator
COPY daemon ./daemon
COPY detectors ./detectors
RUN pip install . && llm-oncall --help >/dev/null

# ---- runtime: the virtualenv only, as a non-root user ------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LLM_ONCALL_STATE__PATH=/var/lib/llm-oncall/state.db
# Note: environment variables override the YAML file, so `state.path` in a config file is
# ignored in this image unless LLM_ONCALL_STATE__PATH is overridden too.
RUN groupadd --system --gid 10001 llm-oncall \
 && useradd --system --uid 10001 --gid llm-oncall --home-dir /var/lib/llm-oncall \
        --no-create-home --shell /usr/sbin/nologin llm-oncall \
 && install -d -o llm-oncall -g llm-oncall -m 0750 /var/lib/llm-oncall
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/llm-oncall
USER 10001:10001
VOLUME ["/var/lib/llm-oncall"]
EXPOSE 9477
# The daemon drains on SIGTERM: stop accepting, last tick, flush state, stop pagers (≤ 10 s).
STOPSIGNAL SIGTERM
# No curl in slim: probe /healthz with the interpreter that is already there. The probe knows
# only LLM_ONCALL_LISTEN__PORT (default 9477), not a mounted config file: to move the port,
# set that variable (-e LLM_ONCALL_LISTEN__PORT=8080; it overrides the file anyway) rather
# than listen.port in the file, or override HEALTHCHECK. It connects to 127.0.0.1, so
# listen.host must be 0.0.0.0 or loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LLM_ONCALL_LISTEN__PORT', '9477') + '/healthz', timeout=4)"]
ENTRYPOINT ["llm-oncall"]
CMD ["run"]
