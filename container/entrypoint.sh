#!/bin/sh
# The image's entry point: settings from files, then the `idserver` command.
#
# IDSERVER_<NAME>_FILE=/run/secrets/x sets IDSERVER_<NAME> to the content of that file (without
# its trailing newline), the convention of the official database images: secrets come from
# mounted files, not from the container's environment. `serve` without --host/--port listens on
# $HOST:$PORT (0.0.0.0:8000), the address the image's HEALTHCHECK asks.
set -eu

for name in $(env | sed -n 's/^\(IDSERVER_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
  eval "file=\${${name}_FILE}"
  if eval "[ -n \"\${${name}+set}\" ]"; then
    echo "idserver-entrypoint: both ${name} and ${name}_FILE are set" >&2
    exit 64
  fi
  if ! value=$(cat -- "$file"); then
    echo "idserver-entrypoint: cannot read ${name}_FILE" >&2
    exit 66
  fi
  export "${name}=${value}"
  unset "${name}_FILE"
done

if [ "${1:-}" = serve ]; then
  shift
  set -- serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" "$@"
fi
exec /opt/idserver/bin/idserver "$@"
