# Chromium for the browser tests (tests/test_report_browser.py, tests/test_dashboard.py).
# Sourced by .ci/run as root. Playwright's own browser download cannot reach its CDN here, so the
# tests drive Debian's package at /usr/bin/chromium. Idempotent: does nothing when it is there.
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -q -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -q --no-install-recommends chromium >/dev/null
fi
