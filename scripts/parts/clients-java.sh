# shellcheck shell=bash
# Test part `clients-java`: the Java client (clients/java, Maven) built and tested against the
# locally built batond. Sourced by scripts/test, which calls part_clients_java.
#
# - Java 17+ and a Maven new enough for the pinned plugins (3.9.6+): Debian's openjdk-17 and
#   maven packages are installed when missing; when the system Maven is older (Debian 12 ships
#   3.8.7) it fetches the pinned Apache Maven distribution from Maven Central as an ordinary
#   artifact, checks its sha256 and unpacks it under ~/.cache/baton/maven.
# - Dependencies live in ~/.m2. Once a build with the current poms has succeeded, later runs are
#   offline (-o); a changed pom, or a cache that lost something, goes online again.
# - `mvn verify` packages baton-client (generating dev.baton.v1 with the pinned protoc and
#   protoc-gen-grpc-java from ../../proto) and runs the JUnit 5 suites; the counts come from
#   Surefire's XML reports.

BATON_MAVEN_VERSION=3.9.16
BATON_MAVEN_SHA256=80ffca22aed9e8b9713a232f3394fd81d7f20322df75efdb2b047dbd3e3a23bb
BATON_MAVEN_MIN=3.9.6

# Installs a Debian package set once (apt-get update first, as the machine notes ask).
baton_java_apt() {
  command -v apt-get >/dev/null 2>&1 || { echo "[clients-java] apt-get not found; install $* by hand" >&2; return 1; }
  echo "[clients-java] apt-get install $*" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# True when version $1 >= version $2 (dotted numbers).
baton_version_ge() {
  [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$2" ]]
}

# Prints the path of an mvn of at least BATON_MAVEN_MIN, installing the pinned one if needed.
baton_java_maven() {
  local home="$BATON_CACHE_DIR/maven/apache-maven-$BATON_MAVEN_VERSION" system_version tmp tarball
  if [[ -x $home/bin/mvn ]]; then
    printf '%s\n' "$home/bin/mvn"
    return 0
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    baton_java_apt maven || return 1
  fi
  system_version=$(mvn -B -v 2>/dev/null | sed -n 's/^.*Apache Maven \([0-9][0-9.]*\).*/\1/p' | head -n 1)
  if [[ -n $system_version ]] && baton_version_ge "$system_version" "$BATON_MAVEN_MIN"; then
    command -v mvn
    return 0
  fi
  echo "[clients-java] system Maven ${system_version:-?} < $BATON_MAVEN_MIN: fetching Apache Maven $BATON_MAVEN_VERSION" >&2
  tmp=$(mktemp -d)
  mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="org.apache.maven:apache-maven:$BATON_MAVEN_VERSION:tar.gz:bin" \
    -DoutputDirectory="$tmp" >&2 || { rm -rf "$tmp"; return 1; }
  tarball="$tmp/apache-maven-$BATON_MAVEN_VERSION-bin.tar.gz"
  if ! echo "$BATON_MAVEN_SHA256  $tarball" | sha256sum -c --quiet - >&2; then
    echo "[clients-java] sha256 mismatch for $tarball" >&2
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$BATON_CACHE_DIR/maven"
  tar xzf "$tarball" -C "$BATON_CACHE_DIR/maven" || { rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
  printf '%s\n' "$home/bin/mvn"
}

part_clients_java() {
  local mvn rc=0 log stamp want offline=() reports f tests failures errors skipped
  local t=0 fl=0 er=0 sk=0

  if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    baton_java_apt openjdk-17-jdk-headless || { check_failed "clients-java: install Java 17" 1; return 0; }
  fi
  java -version 2>&1 | head -n 1
  mvn=$(baton_java_maven) || { check_failed "clients-java: install Maven $BATON_MAVEN_VERSION" 1; return 0; }
  "$mvn" -v 2>/dev/null | head -n 1

  baton_build_bins || { check_failed "clients-java: build batond" 1; return 0; }
  [[ -x ${BATOND_BIN:-} ]] || { check_failed "clients-java: no batond binary at ${BATOND_BIN:-?}" 1; return 0; }

  # Offline once the current poms resolved completely on this machine's ~/.m2.
  stamp="$HOME/.m2/repository/.baton-clients-java.sha256"
  want=$(cat clients/java/pom.xml clients/java/*/pom.xml | sha256sum | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    offline=(-o)
  fi

  rm -rf clients/java/client/target/surefire-reports clients/java/tests/target/surefire-reports
  log=$(mktemp)
  (cd clients/java && "$mvn" -B -q "${offline[@]}" verify -Dbatond.bin="$BATOND_BIN") 2>&1 | tee "$log" || rc=$?
  if ((rc != 0)) && ((${#offline[@]})) && grep -qE 'offline mode|has not been downloaded from it before|Cannot access .* in offline' "$log"; then
    echo "[clients-java] the offline build misses artifacts: going online"
    rm -f "$stamp"
    rm -rf clients/java/client/target/surefire-reports clients/java/tests/target/surefire-reports
    rc=0
    (cd clients/java && "$mvn" -B -q verify -Dbatond.bin="$BATOND_BIN") 2>&1 | tee "$log" || rc=$?
  fi
  rm -f "$log"
  if ((rc == 0)); then
    mkdir -p "$(dirname "$stamp")" && printf '%s\n' "$want" >"$stamp"
  fi

  # Surefire's counts, from its XML reports (mvn -q prints no summary).
  for reports in clients/java/client/target/surefire-reports clients/java/tests/target/surefire-reports; do
    for f in "$reports"/TEST-*.xml; do
      [[ -f $f ]] || continue
      read -r tests failures errors skipped < <(sed -n '/<testsuite /{
          s/.*<testsuite //
          s/>.*//
          p
          q
        }' "$f" | awk '{
          for (i = 1; i <= NF; i++) {
            split($i, kv, "=")
            gsub(/"/, "", kv[2])
            v[kv[1]] = kv[2]
          }
        } END { print v["tests"] + 0, v["failures"] + 0, v["errors"] + 0, v["skipped"] + 0 }')
      t=$((t + tests)) fl=$((fl + failures)) er=$((er + errors)) sk=$((sk + skipped))
    done
  done
  echo "clients-java: Tests run: $t, Failures: $fl, Errors: $er, Skipped: $sk"
  PASSED=$((PASSED + t - fl - er - sk)) FAILED_TESTS=$((FAILED_TESTS + fl + er)) SKIPPED=$((SKIPPED + sk))

  if ((rc != 0)); then
    check_failed "clients-java: mvn verify" "$rc"
  elif ((t == 0)); then
    check_failed "clients-java: no test ran" 1
  fi
}
