#!/usr/bin/env bash
# Installs the system services EMS needs on Debian 12 (bookworm): PostgreSQL 15 with the
# Apache-edition TimescaleDB (built from Debian's own source package, which bookworm does
# not ship), mosquitto with its clients and plugin headers (for the EMS auth plugin),
# Chromium for the headless dashboard tests, and Debian's own Python 3 with its headers (the
# interpreter ./run builds the virtualenv on: Debian builds it with profile-guided and
# link-time optimisation, which a source build such as pyenv's default is not).
#
# Idempotent and non-interactive: a second run finds everything in place, touches neither
# apt's indexes nor the network, and finishes in a couple of seconds.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [[ ${EUID} -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- bash "$0" "$@"
    fi
    echo "setup-system.sh: must run as root, and sudo is not installed" >&2
    exit 1
fi

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
TSDB_CONTROL="/usr/share/postgresql/${PG_MAJOR}/extension/timescaledb.control"
TRIXIE_SRC=/etc/apt/sources.list.d/ems-trixie-src.sources
PACKAGES=(
    "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" dpkg-dev cmake build-essential
    mosquitto mosquitto-clients mosquitto-dev libssl-dev chromium fonts-liberation
    python3 python3-dev python3-venv
)
# Another installer may hold the dpkg lock (for example a parallel set-up): wait, don't fail.
APT=(apt-get -q -y -o DPkg::Lock::Timeout=600)

LOG="$(mktemp -t ems-setup.XXXXXX.log)"
WORK=""
cleanup() {
    [[ -n ${WORK} ]] && rm -rf "${WORK}"
    rm -f "${LOG}"
}
trap cleanup EXIT

step() { printf '==> %s\n' "$*"; }

# Runs a command with its output in the log; on failure shows the log's tail and stops.
quiet() {
    if ! "$@" >>"${LOG}" 2>&1; then
        echo "setup-system.sh: failed: $*" >&2
        tail -n 40 "${LOG}" >&2
        exit 1
    fi
}

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

APT_UPDATED=0
apt_update() {
    if [[ ${APT_UPDATED} -eq 0 ]]; then
        quiet "${APT[@]}" update
        APT_UPDATED=1
    fi
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        installed "${pkg}" || missing+=("${pkg}")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        step "packages: all present"
        return
    fi
    step "packages: installing ${missing[*]}"
    apt_update
    quiet "${APT[@]}" install --no-install-recommends "${missing[@]}"
}

ensure_trixie_sources() {
    [[ -f ${TRIXIE_SRC} ]] && return
    cat >"${TRIXIE_SRC}" <<'EOF'
# Source packages only: EMS builds TimescaleDB (Apache edition) from Debian's own source.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    APT_UPDATED=0 # the new source needs its index even if packages were just installed
}

build_timescaledb() {
    if [[ -f ${TSDB_CONTROL} ]]; then
        step "timescaledb: present ($(sed -n "s/^default_version = '\(.*\)'/\1/p" "${TSDB_CONTROL}"))"
        return
    fi
    step "timescaledb: building the Apache edition from Debian's source package"
    ensure_trixie_sources
    apt_update
    WORK="$(mktemp -d -t ems-timescaledb.XXXXXX)"
    # apt drops privileges to _apt for downloads; let it write here to avoid a warning.
    if id _apt >/dev/null 2>&1; then chown _apt "${WORK}"; fi
    (
        cd "${WORK}"
        quiet apt-get -q source --download-only timescaledb
        quiet dpkg-source -x ./timescaledb_*.dsc src
        quiet cmake -S src -B src/build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DPG_CONFIG="${PG_BIN}/pg_config" -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
            -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF
        quiet make -C src/build -j"$(nproc)"
        quiet make -C src/build install
    )
    [[ -f ${TSDB_CONTROL} ]] || {
        echo "setup-system.sh: build finished but ${TSDB_CONTROL} is missing" >&2
        exit 1
    }
}

# The distro starts its own mosquitto on 1883 after install; EMS runs its own brokers.
stop_distro_mosquitto() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        if systemctl --quiet is-active mosquitto.service \
            || systemctl --quiet is-enabled mosquitto.service 2>/dev/null; then
            step "mosquitto: stopping and disabling the distro service"
            quiet systemctl disable --now mosquitto.service
        else
            step "mosquitto: distro service not running"
        fi
        return
    fi
    local pidfile=/run/mosquitto/mosquitto.pid pid=""
    [[ -r ${pidfile} ]] && pid="$(cat "${pidfile}")"
    # A stale pid file may name a reused pid: only a live mosquitto counts.
    if [[ -z ${pid} ]] || [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" != mosquitto ]]; then
        step "mosquitto: distro service not running"
        return
    fi
    step "mosquitto: stopping and disabling the distro service (pid ${pid})"
    if [[ -x /etc/init.d/mosquitto ]]; then
        /etc/init.d/mosquitto stop >>"${LOG}" 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
        update-rc.d mosquitto disable >>"${LOG}" 2>&1 || true
    fi
    kill -0 "${pid}" 2>/dev/null && kill "${pid}"
    local _
    for _ in $(seq 1 50); do
        kill -0 "${pid}" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "setup-system.sh: distro mosquitto (pid ${pid}) did not stop" >&2
    exit 1
}

install_packages
build_timescaledb
stop_distro_mosquitto
step "done"
