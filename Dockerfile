# ozonetel-purge: the worker pool, its ops/ingestion HTTP server, and the simulator.
#
#   docker build -t ozonetel-purge .
#   docker run --rm -e REDIS_URL=redis://redis:6379/0 -e OZONETEL_API_KEY=... \
#       -e OZONETEL_USERNAME=... -p 8080:8080 ozonetel-purge
#
# No credentials are baked in: every setting comes from the environment at run
# time (see .env.example). Needs BuildKit (the default builder since Docker 23)
# for the bind mount in the runtime stage.

# Both stages on one exact Python release, so two builds of a commit start
# from the same interpreter; for byte-identical bases add the digest your
# registry reports (`docker buildx imagetools inspect python:3.11.13-slim-bookworm`)
# as `@sha256:...`. Raise the tag deliberately, like constraints.txt.
# ---- build: the project's wheel and the wheels of its dependencies ----------
FROM python:3.11.13-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
# Only what the wheel is made of; .dockerignore keeps the rest (and any .env)
# out of the build context altogether.
COPY pyproject.toml README.md constraints.txt ./
COPY worker ./worker
# Every dependency as a wheel here, so the runtime stage installs offline and
# needs no compiler; at the versions constraints.txt pins, so the image has
# the packages CI tested (`make lock` updates them).
RUN pip wheel --no-cache-dir --constraint constraints.txt --wheel-dir /wheels .

# ---- runtime ---------------------------------------------------------------
FROM python:3.11.13-slim-bookworm

LABEL org.opencontainers.image.title="ozonetel-purge" \
      org.opencontainers.image.description="Deletes records from Ozonetel campaigns within the vendor's rate limit" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a
# lookup; no home directory, no shell.
RUN groupadd --system --gid 10001 ozp \
    && useradd --system --uid 10001 --gid ozp --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ozp

# The wheels are bind-mounted, not copied, so they leave no layer behind.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/ozonetel_purge-*.whl

USER 10001:10001
EXPOSE 8080

# Liveness of the ops server that `run --http 0.0.0.0:8080` starts. The slim
# image has no curl; urllib raises (exit 1) on a refused connection or a
# non-2xx answer. Proxies are bypassed: the check is for this container only.
# A container started with another command (e.g. `simulate`) must override or
# disable this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=4)"]

# Exec form: the console script is PID 1 and gets SIGTERM itself, which lets
# requests in flight finish before it exits (give it a grace period longer
# than OZP_REQUEST_TIMEOUT_S).
ENTRYPOINT ["ozonetel-purge"]
CMD ["run", "--http", "0.0.0.0:8080"]
