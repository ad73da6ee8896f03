# One image for every server-side EMS process (broker, platform, dashboard, migrate).
# Devices (Raspberry Pis) install only contract/ and device/: see device/README.md.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/ems
WORKDIR /src
COPY . .
RUN uv sync --frozen --no-dev --no-editable --package ems

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /nonexistent ems
COPY --from=build /opt/ems /opt/ems
ENV PATH=/opt/ems/bin:$PATH PYTHONUNBUFFERED=1
USER ems
ENTRYPOINT ["ems"]
