#!/bin/sh
# The two install steps of the container image. The Dockerfile runs them, and so
# does tests/test_container.py, so the image and its test cannot drift apart.
#
#   packaging/install.sh wheels SOURCE WHEELS
#       wheels of the library (SOURCE/packages/cachecore), the server
#       (SOURCE/packages/server-falcon) and every dependency, into WHEELS
#   packaging/install.sh venv WHEELS VENV
#       a virtual environment VENV without pip, holding cachecore-server and
#       what it depends on, installed from WHEELS alone (no index, no extras)
#
# PYTHON names the interpreter (default python3). pip's own variables apply:
# the Dockerfile sets PIP_NO_CACHE_DIR, the test lets pip keep its cache.
set -eu

python=${PYTHON:-python3}
pip="$python -m pip --disable-pip-version-check --no-input"

case "${1:-}" in
    wheels)
        [ $# -eq 3 ] || { echo "usage: $0 wheels SOURCE WHEELS" >&2; exit 2; }
        $pip wheel --wheel-dir "$3" "$2/packages/cachecore" "$2/packages/server-falcon"
        ;;
    venv)
        [ $# -eq 3 ] || { echo "usage: $0 venv WHEELS VENV" >&2; exit 2; }
        "$python" -m venv --without-pip "$3"
        # pip runs from the base interpreter and installs into the venv, so the
        # venv holds the server and its dependencies and nothing else.
        $pip --python "$3/bin/python" install --no-index --find-links "$2" \
            cachecore-server
        ;;
    *)
        echo "usage: $0 wheels SOURCE WHEELS | venv WHEELS VENV" >&2
        exit 2
        ;;
esac
