#!/bin/sh
# Make `prometheus` and `promtool` available for the rule and end-to-end observability tests.
# Idempotent and quiet: does nothing when promtool is already on the PATH, so `make test` can
# call it every time. Installs Debian's `prometheus` package otherwise (CI runs as root with no
# stdin; a developer is asked for sudo once).
set -eu

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "ensure-prometheus: promtool is missing and this user cannot install packages;" >&2
    echo "  install Debian's 'prometheus' package (it provides prometheus and promtool)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-prometheus: no apt-get here; install Prometheus 2.x+ (prometheus, promtool)" >&2
    echo "  from https://prometheus.io/download/ and put both on the PATH" >&2
    exit 1
fi

# sudo resets the environment, so the frontend goes on the command line.
apt="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
echo "ensure-prometheus: installing Debian's prometheus package (once)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Output is kept only to be shown when apt fails, so a successful `make test` stays quiet.
if ! { $apt update -qq && $apt install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1 </dev/null; then
    cat "$log" >&2
    echo "ensure-prometheus: apt-get failed (output above)" >&2
    exit 1
fi

command -v promtool >/dev/null 2>&1 || {
    echo "ensure-prometheus: installed 'prometheus' but promtool is still not on the PATH" >&2
    exit 1
}
