# One image for every server-side EMS process (broker, platform, dashboard, migrate).
# Devices (Raspberry Pis) install only contract/ and device/: see device/README.md.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/ems
WORKDIR /src
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package ems

FROM python:3.11-slim-bookworm
# Mosquitto and what the EMS auth plugin compiles against (the default broker).
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto mosquitto-dev libssl-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/ems ems
COPY --from=build /opt/ems /opt/ems
ENV PATH=/opt/ems/bin:$PATH PYTHONUNBUFFERED=1 EMS_DATA_DIR=/var/lib/ems
USER ems
# Compile the plugin into the image's cache so the broker starts at once.
RUN python -c "from pathlib import Path; from ems_broker.mosquitto.plugin_build import build_plugin; from ems_broker.mosquitto.settings import _default_plugin_cache as c; print(build_plugin(c()))"
ENTRYPOINT ["ems"]
