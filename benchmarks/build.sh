#!/usr/bin/env bash
# Builds what the benchmark scripts run, from this checkout: launcher/target/dtrain.jar (dtrain with every
# dependency) and benchmarks/target/classes. Plain Maven, online: a fresh clone fetches the plugins and dependencies
# it has never seen (the README's set-up is all it needs); no tests run and nothing is installed into ~/.m2.
# Rebuilds only when either output is missing or a source, pom or jvm.properties is newer; DTRAIN_NO_REBUILD=1
# skips that check when both exist. Usage: benchmarks/build.sh (the other scripts call it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JAR="$ROOT/launcher/target/dtrain.jar"
MARK="$ROOT/benchmarks/target/classes/io/dtrain/bench/TorchComparison.class"

needs_build() {
  [ ! -f "$JAR" ] || [ ! -f "$MARK" ] && return 0
  [ -n "${DTRAIN_NO_REBUILD:-}" ] && return 1
  local oldest="$JAR"
  [ "$MARK" -ot "$JAR" ] && oldest="$MARK"
  [ -n "$(find "$ROOT"/*/src/main "$ROOT"/pom.xml "$ROOT"/*/pom.xml "$ROOT/jvm.properties" -newer "$oldest" -type f \
    -print -quit 2>/dev/null)" ]
}

if needs_build; then
  echo "benchmarks/build.sh: building dtrain.jar and the benchmark classes (first use or sources changed)..." >&2
  (cd "$ROOT" && mvn -B -q -Dmaven.test.skip=true -pl benchmarks -am package) >&2
fi
