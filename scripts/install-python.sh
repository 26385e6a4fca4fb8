#!/usr/bin/env bash
# The Python packages the protocol tests drive Sluice with (third-party
# clients, from PyPI): confluent-kafka's Schema Registry client, Avro
# serializer and deserializer, and the OpenTelemetry SDK's OTLP/HTTP log
# exporter; Schemathesis, which checks the OpenAPI contract. Installed once into a cached virtual environment,
# ~/.cache/sluice/venv (SLUICE_CACHE overrides the cache); a second run only
# checks it. Prints the venv's python on its last line.
set -euo pipefail
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
venv="$cache/venv"
# Bump when the list changes, so existing venvs are brought up to date.
want="2026-12-03.1"
packages=(
  "confluent-kafka[avro,schemaregistry]>=2.6,<3"
  "opentelemetry-sdk>=1.27,<2"
  "opentelemetry-exporter-otlp-proto-http>=1.27,<2"
  "schemathesis>=4.3,<5"
)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.sluice-packages" 2>/dev/null)" = "$want" ]; then
  echo "Python packages: $venv (cached)" >&2
  echo "$venv/bin/python"
  exit 0
fi
python="$(command -v python3 || true)"
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq python3 python3-venv
  python="$(command -v python3)"
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}" >&2
echo "$want" > "$venv/.sluice-packages"
echo "Python packages: $venv ($("$venv/bin/python" -m pip --disable-pip-version-check freeze | grep -iE '^(confluent-kafka|opentelemetry-sdk|opentelemetry-exporter-otlp-proto-http|schemathesis)=' | tr '\n' ' '))" >&2
echo "$venv/bin/python"
