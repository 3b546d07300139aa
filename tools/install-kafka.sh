#!/usr/bin/env bash
# Resolves the official Apache Kafka jars (version pinned in tools/kafka-version) with Maven into a cache
# outside the build tree. Safe to run twice: a complete cache is left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(tr -d '[:space:]' < "$here/kafka-version")
cache=${AQUEDUCT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aqueduct}
dest="$cache/kafka-$version"
if [ -f "$dest/.complete" ]; then
  echo "kafka $version: cached in $dest"
  exit 0
fi
command -v mvn >/dev/null || { echo "install-kafka: mvn is required (apt-get install -y maven)" >&2; exit 1; }
command -v java >/dev/null || { echo "install-kafka: java 17 is required (apt-get install -y openjdk-17-jre-headless)" >&2; exit 1; }
mkdir -p "$dest"
tmp=$(mktemp -d "$dest/.libs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "kafka $version: resolving jars with maven"
mvn -q -B -f "$here/kafka-pom.xml" dependency:copy-dependencies \
  -Dkafka.version="$version" -DoutputDirectory="$tmp" -DincludeScope=runtime
rm -rf "$dest/libs"
mv "$tmp" "$dest/libs"
touch "$dest/.complete"
echo "kafka $version: cached in $dest"
