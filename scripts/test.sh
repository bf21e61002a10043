#!/bin/sh
# Install everything the tests need and run the whole suite: ruff, mypy, pytest.
# Run as root on a Debian 12 machine (CI runs exactly this).
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh --test
py=.venv/bin/python
$py -m ruff check tuibox tests
$py -m mypy
set +e
$py -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
