#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh demo   the end-to-end demo: local Elasticsearch + Redis, a real worker, the shipper, a report
#   ./run.sh test   the whole test suite (ruff and mypy included)
# Both do all the set-up a fresh Debian/Ubuntu machine needs: redis-server and a JDK (apt, when root;
# the tests also Chromium and rabbitmq-server),
# a virtual environment in .venv with the project installed, and the Elasticsearch build (cached).
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_apt=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/sbin/redis-server ] || need_apt+=(redis-server)
java_ok=0
for j in "${ES_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/*; do
  [ -n "$j" ] && [ -x "$j/bin/java" ] && java_ok=1 && break
done
command -v java >/dev/null 2>&1 && java_ok=1
[ "$java_ok" = 1 ] || need_apt+=(openjdk-17-jre-headless)
# The tests render the HTML report in headless Chromium, and run lost-task incidents on RabbitMQ too.
if [ "${1:-}" = test ] && ! command -v chromium >/dev/null 2>&1; then need_apt+=(chromium); fi
if [ "${1:-}" = test ] && ! [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null 2>&1
then need_apt+=(rabbitmq-server); fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_apt[*]} (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing system packages: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  say "creating .venv and installing celery-logs with its dev tools"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ "${1:-}" = test ]; then
  say "fetching Elasticsearch and OpenSearch (cached after the first time)"
  .venv/bin/celery-logs dev fetch --engine both
else
  say "fetching Elasticsearch (cached after the first time)"
  .venv/bin/celery-logs dev fetch
fi

case "${1:-}" in
  demo) shift; exec .venv/bin/celery-logs demo "$@" ;;
  test) shift; exec .venv/bin/python -m pytest "$@" ;;
  celery-suite) shift; exec .venv/bin/python -m tests.celery_suite.harness "$@" ;;
  *) echo "usage: ./run.sh demo|test|celery-suite [args...]" >&2; exit 2 ;;
esac
