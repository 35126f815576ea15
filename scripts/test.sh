#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, the package itself) and runs them.
# Used by README.md and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_missing=()
for pkg in python3-vigra python3-h5py python3-pyqt5 python3-venv python3-pip xvfb redis-server rabbitmq-server g++ \
           cmake docker-compose chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_missing+=("$pkg")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${apt_missing[@]}"
fi

# The shared Redis and RabbitMQ the tests talk to (started here on a machine without them).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
fi

# Exactly the pinned versions (requirements-dev.lock, with hashes), then the package itself, editable.
python3 -m pip install -q -r requirements-dev.lock
python3 -m pip install -q --no-deps --no-build-isolation -e .

# volumina (ilastik's viewer, not on PyPI) from its source archive, for the volumina screenshot tests (cached)
./scripts/install_volumina.sh >/dev/null
# The real fastfilters library (ilastik >= 1.3's features, GCC -Ofast as ilastik's packages built it),
# the reference of the fastfilters engine's tests; built once into a cache, next runs reuse it.
if [ -x ../shared/reference/build_fastfilters.sh ]; then
  export ILASTIKBACKEND_FASTFILTERS=${ILASTIKBACKEND_FASTFILTERS:-$HOME/.cache/ilastikbackend/fastfilters-87f08b5-ofast}
  bash ../shared/reference/build_fastfilters.sh "$ILASTIKBACKEND_FASTFILTERS" /usr/bin/python3 >/dev/null
fi

ruff check .
python3 -m pytest -q "$@"
