#!/usr/bin/env bash
# Installs Apicurio Registry, a real schema-registry server with a
# Confluent-compatible API (/apis/ccompat/v7), for tests/tests/apicurio.rs:
# the external-registry client ([schema_registry] url) tested against a
# registry that is not Sluice.
#
# Apicurio's release build publishes the ready-to-run Quarkus application
# (fast-jar layout: quarkus-run.jar, lib/, app/, quarkus/) to Maven Central
# as `io.apicurio:apicurio-registry-app:<version>:tar.gz:all`; Maven fetches
# it, and it is unpacked into ~/.cache/sluice/apicurio/<version>/app. No
# Quarkus build step is needed. Its default storage is an in-memory H2
# database, so every start is an empty registry.
#
# Apicurio 3.x is compiled for Java 21 (class file 65): a Java 21 or newer is
# looked for (SLUICE_APICURIO_JAVA, $JAVA_HOME, `java`, /usr/lib/jvm/*) and
# its path written to <version>/java, where the tests read it.
#
# Idempotent: a stamp file records a complete, smoke-tested install; with it
# present nothing touches the network. Prints the install directory on its
# last line. SLUICE_APICURIO_VERSION picks another 3.x version.
set -euo pipefail
version="${SLUICE_APICURIO_VERSION:-3.3.3}"
root="${SLUICE_CACHE:-$HOME/.cache/sluice}/apicurio/$version"
app="$root/app"
stamp="$root/.complete"

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java.specification.version = //p' | cut -d. -f1
}
find_java() {
  local candidates=()
  [ -n "${SLUICE_APICURIO_JAVA:-}" ] && candidates+=("$SLUICE_APICURIO_JAVA")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && candidates+=("$(command -v java)")
  # Newest first.
  while IFS= read -r j; do candidates+=("$j"); done < <(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -rV)
  for j in "${candidates[@]}"; do
    if [ -x "$j" ] && [ "$(java_major "$j" 2>/dev/null || echo 0)" -ge 21 ] 2>/dev/null; then
      echo "$j"
      return 0
    fi
  done
  return 1
}

if [ -f "$stamp" ] && [ -f "$app/quarkus-run.jar" ]; then
  # The Java recorded at install time may have gone: pick another.
  if [ ! -x "$(cat "$root/java" 2>/dev/null)" ] && java="$(find_java)"; then
    echo "$java" >"$root/java"
  fi
  if [ -x "$(cat "$root/java" 2>/dev/null)" ]; then
    echo "apicurio $version: cached at $root (java $(cat "$root/java"))"
    echo "$root"
    exit 0
  fi
fi

if ! java="$(find_java)"; then
  # Debian 12 packages no Java 21; newer Debian releases do.
  if apt-cache show openjdk-21-jre-headless >/dev/null 2>&1; then
    echo "apicurio: installing openjdk-21-jre-headless (Debian)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openjdk-21-jre-headless
  fi
  java="$(find_java)" || {
    echo "apicurio $version needs Java 21 or newer (its classes are class file 65) and none was found;" >&2
    echo "install one and set SLUICE_APICURIO_JAVA=/path/to/bin/java" >&2
    exit 1
  }
fi
command -v mvn >/dev/null || {
  echo "apicurio: Maven (mvn) is needed to fetch the registry from Maven Central" >&2
  exit 1
}

echo "apicurio $version: fetching io.apicurio:apicurio-registry-app:$version:tar.gz:all from Maven Central"
mkdir -p "$root"
rm -rf "$root/download" "$app.tmp"
fetch() {
  (cd "$root" && mvn -B -q -Dstyle.color=never "$@" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all" \
    -DoutputDirectory="$root/download")
}
# Offline first: an ~/.m2 that already holds the archive needs no network.
fetch -o >/dev/null 2>&1 || fetch
mkdir -p "$app.tmp"
tar -xzf "$root/download/apicurio-registry-app-$version-all.tar.gz" -C "$app.tmp"
rm -rf "$root/download" "$app"
mv "$app.tmp" "$app"
echo "$java" >"$root/java"

# A smoke check: it starts (on ports the JVM picks) and answers the
# Confluent-compatible API.
log="$root/smoke.log"
"$java" -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port=0 \
  -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port=0 \
  -jar "$app/quarkus-run.jar" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
ok=""
for _ in $(seq 240); do
  port="$(sed -n 's|.*Listening on: http://127.0.0.1:\([0-9]*\).*|\1|p' "$log" | head -n1)"
  if [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/apis/ccompat/v7/subjects")" = 200 ]; then
    ok=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT
if [ -z "$ok" ]; then
  tail -n 40 "$log" >&2
  echo "apicurio $version: the smoke start failed (log above, $log)" >&2
  exit 1
fi
rm -f "$log"
date -u +%FT%TZ >"$stamp"
echo "apicurio $version: $(ls "$app/lib/main" | wc -l) jars in $app, java $java"
echo "$root"
