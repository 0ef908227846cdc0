#!/bin/sh
# Installs what chatq needs to build, test, demo and benchmark, only what is
# missing: Debian packages through apt-get (directly as root, else through
# sudo), then the npm packages of the examples (`npm ci` in each examples/
# directory with a package-lock.json, when its node_modules is missing or
# was installed from another lock file). Quiet and quick when all is there.
# prometheus (with promtool) is for tests/e2e/test_metrics.py, which runs
# its own Prometheus on a free port; on a host with systemd, Debian's package
# also enables and starts a prometheus.service of its own on port 9090.
# time (GNU time) measures the CLI's peak memory in tests/e2e/test_cli_hostile.py;
# systemd (systemd-analyze) and groff-base check the unit files and man pages
# in tests/e2e/test_systemd.py, which skips those checks only where they are
# run without this script.
set -e
cd "$(dirname "$0")/.."
PKGS="make gcc pkg-config libuv1-dev libhiredis-dev libcurl4-openssl-dev libjson-c-dev
libcmocka-dev libssl-dev libmicrohttpd-dev redis-server redis-tools python3 python3-redis
python3-pytest chromium prometheus time systemd groff-base"
# The Node examples and the browser test need node and npm: Debian's, unless
# some other node (nodesource's, say) is on PATH already.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
[ -n "$CHATQ_DEPS_EXTRA" ] && PKGS="$PKGS $CHATQ_DEPS_EXTRA"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# npm ci wipes node_modules and installs exactly the lock file; a copy of
# the lock file kept in node_modules says which one it was.
for lock in examples/*/package-lock.json; do
    [ -f "$lock" ] || continue
    dir=$(dirname "$lock")
    stamp="$dir/node_modules/.chatq-installed-lock"
    cmp -s "$lock" "$stamp" 2>/dev/null && continue
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$lock" "$stamp"
done
