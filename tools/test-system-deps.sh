#!/usr/bin/env bash
# System programs some tests drive as real peers, installed from Debian when missing and when
# run as root (otherwise those tests skip, each saying why):
#   dbus-daemon, busctl  tests/test_dbus.py (packages dbus, systemd)
#   chromium             tests/test_console_browser.py (package chromium)
set -euo pipefail
missing=()
command -v dbus-daemon >/dev/null || missing+=(dbus)
command -v busctl >/dev/null || missing+=(systemd)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} for the tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "not installed (the tests that need them will skip): ${missing[*]}"
fi
