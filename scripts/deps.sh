#!/bin/sh
# Installs the Debian packages chatq needs to build, test, demo and benchmark,
# only those missing. Runs apt-get directly as root, else through sudo.
set -e
PKGS="make gcc pkg-config libuv1-dev libhiredis-dev libcurl4-openssl-dev libjson-c-dev
libcmocka-dev redis-server redis-tools python3 python3-redis python3-pytest"
[ -n "$CHATQ_DEPS_EXTRA" ] && PKGS="$PKGS $CHATQ_DEPS_EXTRA"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
