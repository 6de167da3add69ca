# metrics-router: the router (`serve`) and the delivery workers (`forward`) in one image.
# Builds with the classic builder and with BuildKit, from a clean clone:
#   docker build -t metrics-router:local .
#   docker build --build-arg METRICS_ROUTER_COMPILE=1 .     # the mypyc-compiled wheel
#   docker build --build-arg BASE_IMAGE=python:3.12-slim \
#       --build-arg VERSION_COMMIT="$(git rev-parse HEAD)" --build-arg VERSION_BUILD="$CI_JOB_URL" .
# /__version__ reads /app/version.json: a version.json in the build context is used as it
# is; otherwise one is written from VERSION_COMMIT / VERSION_BUILD and the package version.
# Few instructions on purpose: with the vfs storage driver every step copies the image.
ARG BASE_IMAGE=python:3.11-slim

# -- build: the wheel, then a virtualenv with it and its dependencies, under /out ----------
FROM ${BASE_IMAGE} AS build
# .dockerignore lets in only what the wheel is made of (and version.json, if present).
COPY . /src
# 1: the hot modules compiled with mypyc (README "Performance"); a C compiler (and the
# Python headers, where the base image lacks them) is installed in this stage only, the
# final image stays compiler-free.
ARG METRICS_ROUTER_COMPILE=0
RUN set -e; cd /src; export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1; \
    if [ "$METRICS_ROUTER_COMPILE" = 1 ]; then apt-get update -q; \
        headers=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
        dev=; [ -f "$headers/Python.h" ] || dev=python3-dev; \
        apt-get install -y -q --no-install-recommends gcc libc6-dev $dev; fi; \
    python -m pip wheel -q --no-deps --wheel-dir /dist .; \
    python -m venv /opt/metrics-router; \
    /opt/metrics-router/bin/pip install -q /dist/metrics_router-*.whl; \
    /opt/metrics-router/bin/pip uninstall -q -y pip setuptools
# After the install, so that a new commit id does not redo it.
ARG VERSION_COMMIT=unknown
ARG VERSION_BUILD=
RUN set -e; mkdir -p /out/app /out/opt; \
    if [ -f /src/version.json ]; then cp /src/version.json /out/app/version.json; \
    else /opt/metrics-router/bin/python -c 'import json, os, router; print(json.dumps({ \
        "source": "metrics-router", "version": router.__version__, \
        "commit": os.environ["VERSION_COMMIT"], "build": os.environ["VERSION_BUILD"]}))' \
        > /out/app/version.json; fi; \
    mv /opt/metrics-router /out/opt/

# -- runtime: the base image, the virtualenv, an unprivileged user -------------------------
FROM ${BASE_IMAGE}
# Every path the service writes (spool, dead letters, worker directories with gunicorn's
# control socket, relative defaults) is under the user's home, /var/lib/metrics-router.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/metrics-router app
COPY --from=build /out/ /
ENV PATH=/opt/metrics-router/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    METRICS_ROUTER_SERVER_HOST=0.0.0.0 \
    METRICS_ROUTER_FORWARD_HOST=0.0.0.0 \
    METRICS_ROUTER_SERVER_WORKER_DIR=/var/lib/metrics-router/workers
WORKDIR /var/lib/metrics-router
USER app
# 8080: the router (`serve`); 8081: a forwarder's Dockerflow endpoints (`forward`).
EXPOSE 8080 8081
# Whichever of the two this container runs answers /__lbheartbeat__.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD ["python", "-m", "router.healthcheck"]
ENTRYPOINT ["metrics-router"]
CMD ["serve"]
