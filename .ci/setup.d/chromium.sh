# Chromium for the browser tests (tests/test_report_browser.py, tests/test_dashboard.py).
# Sourced by .ci/run as root before the tests. Playwright's own browser download cannot work on
# these machines, so the tests drive Debian's package at /usr/bin/chromium (headless; its
# recommended packages are desktop services a headless browser does not need; fonts come with
# fontconfig). Idempotent: does nothing when chromium is there. Quiet unless apt-get fails.
if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium for the browser tests"
    chromium_log=$(mktemp)
    if ! { apt-get update -q \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
    } >"$chromium_log" 2>&1; then
        cat "$chromium_log" >&2
        rm -f "$chromium_log"
        return 1
    fi
    rm -f "$chromium_log"
    unset chromium_log
fi
