# metrics-router: the router (`serve`) and the delivery workers (`forward`) in one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY router/__init__.py router/__init__.py
RUN pip install --no-cache-dir -e .

COPY router router
COPY rules rules
# Written by the build pipeline (Dockerflow /__version__); optional.
COPY version.jso[n] ./

RUN useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /var/lib/metrics-router \
    && chown app /var/lib/metrics-router
USER app

EXPOSE 8080
ENV METRICS_ROUTER_SERVER_HOST=0.0.0.0 \
    METRICS_ROUTER_SERVER_WORKER_DIR=/var/lib/metrics-router/workers
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/__lbheartbeat__', timeout=2)"
ENTRYPOINT ["metrics-router"]
CMD ["serve"]
