#!/usr/bin/env bash
# Resolves the official Apache Kafka jars (version pinned in tools/kafka-version) with Maven into a cache
# outside the build tree. Safe to run twice: a complete cache is left alone.
#   tools/install-kafka.sh              the broker and its tools   -> <cache>/kafka-<version>
#   tools/install-kafka.sh mirrormaker  MirrorMaker 2 (benchmark)  -> <cache>/kafka-<version>-mirrormaker
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(tr -d '[:space:]' < "$here/kafka-version")
cache=${AQUEDUCT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aqueduct}
case "${1:-broker}" in
  broker) pom="$here/kafka-pom.xml"; dest="$cache/kafka-$version" ;;
  mirrormaker) pom="$here/mirrormaker-pom.xml"; dest="$cache/kafka-$version-mirrormaker" ;;
  *) echo "install-kafka: unknown flavour $1 (broker or mirrormaker)" >&2; exit 2 ;;
esac
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
mvn -q -B -f "$pom" dependency:copy-dependencies \
  -Dkafka.version="$version" -DoutputDirectory="$tmp" -DincludeScope=runtime
rm -rf "$dest/libs"
mv "$tmp" "$dest/libs"
touch "$dest/.complete"
echo "kafka $version: cached in $dest"
