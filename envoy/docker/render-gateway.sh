#!/bin/sh
# Renders an Envoy config template's `{{ NAME }}` placeholders from the environment variables of
# the same names (each must be set), then runs the rest of the command line (Envoy) on it.
# docker-compose's Envoy uses it to run envoy/gateway.yaml, the template the local demo renders.
#
#   render-gateway.sh TEMPLATE OUTPUT [COMMAND...]    (without COMMAND: render and exit)
set -eu
if [ $# -lt 2 ]; then
  echo "usage: render-gateway.sh TEMPLATE OUTPUT [COMMAND...]" >&2
  exit 2
fi
template=$1
out=$2
shift 2
cp "$template" "$out.tmp"
for name in $(grep -o '{{ *[A-Z0-9_][A-Z0-9_]* *}}' "$template" | tr -d '{} ' | sort -u); do
  # Plain sh (no printenv: the repository's FROM scratch Envoy image has only busybox's sh).
  # The name is [A-Z0-9_]+ by the grep above, so eval sees nothing else.
  eval "is_set=\${$name+set}"
  if [ "$is_set" != set ]; then
    echo "render-gateway: $name is not set (a placeholder of $template)" >&2
    exit 1
  fi
  eval "value=\$$name"
  escaped=$(printf '%s' "$value" | sed 's/[\\|&]/\\&/g')
  sed -i "s|{{ *$name *}}|$escaped|g" "$out.tmp"
done
if grep -n '{{' "$out.tmp" >&2; then
  echo "render-gateway: unrendered placeholders above" >&2
  exit 1
fi
mv "$out.tmp" "$out"
if [ $# -gt 0 ]; then
  exec "$@"
fi
