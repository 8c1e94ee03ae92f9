# shellcheck shell=bash
# Part "image": builds the container image with scripts/image from the debug binaries the
# other parts build anyway (the documented path builds release binaries; same script, same
# layout), then checks it: the image config, the root filesystem (no shell, libraries resolve,
# numeric user, CA certificates), `batond --version` and `baton-mcp --version` in a container,
# and the image serving: batond in a container as the chart runs it (read-only root, no
# capabilities, /tmp writable) answers /ready and `batond probe` from a second container.
#
# Containers run with podman (Debian's buildah, podman and runc, installed when missing). runc
# rather than crun: crun refuses this machine's hybrid cgroup layout. The default ulimits podman
# asks for are above this sandbox's hard limits, so the runs pass ones within them. Where podman
# cannot start containers at all, the same commands run in the image's mounted root filesystem
# through chroot with the image's user, and the log says so.

BATON_IMAGE_TAG="localhost/baton:scripts-test"

baton_image_tools() {
  local missing=() p
  for p in buildah podman runc; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  echo "image: installing ${missing[*]} (Debian packages)"
  baton_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { baton_as_root apt-get update -qq && baton_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

# Records one check: NAME then a command; prints ok/FAILED and adds to the totals.
baton_image_check() {
  local name=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
    printf 'ok      %s\n' "$name"
  else
    FAILED_TESTS=$((FAILED_TESTS + 1))
    printf 'FAILED  %s (exit %s)\n%s\n' "$name" "$rc" "$out"
    IMAGE_FAILED=1
  fi
}

# Runs the image: podman when it can start containers here, else chroot into its rootfs.
baton_image_run() { # [--writable] [--detach NAME] [--entrypoint PATH] ARGS...
  local detach="" entrypoint="/usr/local/bin/batond" readonly=(--read-only)
  [[ $1 == --writable ]] && { readonly=(); shift; }
  [[ $1 == --detach ]] && { detach=$2; shift 2; }
  [[ $1 == --entrypoint ]] && { entrypoint=$2; shift 2; }
  if [[ $IMAGE_RUNNER == podman ]]; then
    local flags=(--rm --runtime runc --network host "${readonly[@]}" --tmpfs /tmp:rw,mode=1777
      --cap-drop ALL --security-opt no-new-privileges
      --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096 --entrypoint "$entrypoint")
    if [[ -n $detach ]]; then
      podman run -d --name "$detach" "${flags[@]}" "$BATON_IMAGE_TAG" "$@" >/dev/null
    else
      podman run "${flags[@]}" "$BATON_IMAGE_TAG" "$@"
    fi
  else
    local env=(env -i PATH=/usr/local/bin:/usr/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt BATON_DATA_DIR=/var/lib/baton)
    if [[ -n $detach ]]; then
      chroot --userspec=65532:65532 "$IMAGE_ROOTFS" "${env[@]}" "$entrypoint" "$@" >"$IMAGE_WORK/$detach.log" 2>&1 &
      echo $! >"$IMAGE_WORK/$detach.pid"
    else
      chroot --userspec=65532:65532 "$IMAGE_ROOTFS" "${env[@]}" "$entrypoint" "$@"
    fi
  fi
}

baton_image_stop() {
  local name=$1
  if [[ $IMAGE_RUNNER == podman ]]; then
    podman stop -t 30 "$name" >/dev/null 2>&1 || true
  elif [[ -f $IMAGE_WORK/$name.pid ]]; then
    kill -TERM "$(cat "$IMAGE_WORK/$name.pid")" 2>/dev/null || true
    wait "$(cat "$IMAGE_WORK/$name.pid")" 2>/dev/null || true
  fi
}

baton_free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

baton_image_config_ok() {
  local config
  config=$(podman image inspect "$BATON_IMAGE_TAG" --format '{{json .Config}}')
  python3 - "$config" "$1" <<'EOF'
import json, sys
c = json.loads(sys.argv[1])
version = sys.argv[2]
assert c["Entrypoint"] == ["/usr/local/bin/batond"], c["Entrypoint"]
assert c["Cmd"] == ["serve"], c["Cmd"]
assert c["User"] == "65532:65532", c["User"]
assert c["WorkingDir"] == "/var/lib/baton", c["WorkingDir"]
assert set(c["ExposedPorts"]) == {"50051/tcp", "9090/tcp", "3000/tcp"}, c["ExposedPorts"]
assert "PATH=/usr/local/bin:/usr/bin" in c["Env"] and "BATON_DATA_DIR=/var/lib/baton" in c["Env"], c["Env"]
labels = c["Labels"]
assert labels["org.opencontainers.image.version"] == version, labels
for k in ("title", "description", "revision", "created", "licenses"):
    assert labels.get(f"org.opencontainers.image.{k}"), k
EOF
}

# The Containerfile's runtime stage declares the same config as scripts/image gives the image.
baton_containerfile_matches() {
  local f=Containerfile
  grep -qx 'FROM scratch' $f &&
    grep -qx 'ENTRYPOINT \["/usr/local/bin/batond"\]' $f &&
    grep -qx 'CMD \["serve"\]' $f &&
    grep -qx 'USER 65532:65532' $f &&
    grep -qx 'WORKDIR /var/lib/baton' $f &&
    grep -qx 'ENV PATH=/usr/local/bin:/usr/bin \\' $f &&
    grep -qx 'EXPOSE 50051/tcp 9090/tcp 3000/tcp' $f &&
    grep -q 'RUN scripts/image --rootfs /rootfs --bin-dir /out' $f &&
    grep -q -- '--bin batond -p baton-gateway --bin baton-mcp' $f
}

baton_image_rootfs_ok() {
  local r=$IMAGE_ROOTFS
  [[ ! -e $r/bin/sh && ! -e $r/usr/bin/sh && ! -e $r/bin/bash ]] || { echo "the image has a shell"; return 1; }
  grep -qx 'baton:x:65532:65532:baton:/var/lib/baton:/nonexistent' "$r/etc/passwd" || { echo "no user 65532"; return 1; }
  grep -qx 'baton:x:65532:' "$r/etc/group" || { echo "no group 65532"; return 1; }
  [[ -s $r/etc/ssl/certs/ca-certificates.crt ]] || { echo "no CA certificates"; return 1; }
  [[ $(stat -c %a "$r/var/lib/baton") == 1777 ]] || { echo "/var/lib/baton is not writable for the user"; return 1; }
  [[ -x $r/usr/bin/sleep ]] || { echo "no /usr/bin/sleep for the preStop hook"; return 1; }
  # Every library each executable needs, resolved by the image's own loader inside the image.
  local loader bin libs
  loader=$(cd "$r" && ls lib64/ld-linux-*.so.* lib/ld-linux-*.so.* 2>/dev/null | head -n 1)
  [[ -n $loader ]] || { echo "no dynamic loader in the image"; return 1; }
  for bin in /usr/local/bin/batond /usr/local/bin/baton-mcp /usr/bin/sleep; do
    libs=$(chroot "$r" "/$loader" --list "$bin") || { echo "$bin: $libs"; return 1; }
    if grep -q 'not found' <<<"$libs"; then echo "$bin: $libs"; return 1; fi
  done
}

baton_image_version() { # EXPECTED RUN-ARGS...
  local expected=$1 out
  shift
  out=$(baton_image_run "$@") || return 1
  [[ $out == "$expected" ]] || { echo "expected '$expected', got '$out'"; return 1; }
}

baton_image_serves() { # hardened | default
  local grpc admin i run=()
  grpc=$(baton_free_port) admin=$(baton_free_port)
  podman rm -f baton-image-test >/dev/null 2>&1 || true
  if [[ $1 == hardened ]]; then
    # As the chart runs it: read-only root, /tmp an emptyDir.
    run=(--detach baton-image-test --grpc-addr "127.0.0.1:$grpc" --admin-addr "127.0.0.1:$admin" --data-dir /tmp/data)
  else
    # As `podman run IMAGE` runs it: the embedded store in the image's /var/lib/baton.
    run=(--writable --detach baton-image-test --grpc-addr "127.0.0.1:$grpc" --admin-addr "127.0.0.1:$admin")
  fi
  baton_image_run "${run[@]}" serve
  for ((i = 0; i < 100; i++)); do
    curl -fsS "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && break
    sleep 0.2
  done
  local out rc=0
  out=$(baton_image_run probe --endpoint "http://127.0.0.1:$grpc" --tenant baton-image-test 2>&1) || rc=$?
  baton_image_stop baton-image-test
  echo "$out"
  ((rc == 0)) && [[ $out == "probe ok: "* ]]
}

part_image() {
  local version mounted_ctr="" start
  IMAGE_FAILED=0
  IMAGE_WORK=$(mktemp -d)
  baton_image_tools || { check_failed "image: installing buildah/podman/runc" 1; return 0; }
  baton_build_bins || { check_failed "image: building batond and baton-mcp" 1; return 0; }
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

  podman rmi -f "$BATON_IMAGE_TAG" >/dev/null 2>&1 || true
  start=$SECONDS
  if ! scripts/image --profile debug --no-build --tag "$BATON_IMAGE_TAG"; then
    check_failed "image: scripts/image" 1
    rm -rf "$IMAGE_WORK"
    return 0
  fi
  echo "image built in $((SECONDS - start))s"
  mounted_ctr=$(buildah from --name "baton-image-check-$$" "$BATON_IMAGE_TAG")
  IMAGE_ROOTFS=$(buildah mount "$mounted_ctr")

  IMAGE_RUNNER=podman
  if ! podman run --rm --runtime runc --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
    "$BATON_IMAGE_TAG" --version >"$IMAGE_WORK/podman.log" 2>&1; then
    IMAGE_RUNNER=chroot
    echo "image: podman cannot run containers here ($(tail -n 1 "$IMAGE_WORK/podman.log")):"
    echo "image: running the image's root filesystem with its user and environment through chroot instead"
  fi
  echo "image: containers run with $IMAGE_RUNNER"

  baton_image_check "image config (entrypoint, cmd, user 65532, workdir, env, ports, OCI labels)" baton_image_config_ok "$version"
  baton_image_check "Containerfile declares the same runtime config and uses scripts/image --rootfs" baton_containerfile_matches
  baton_image_check "rootfs: no shell, user and group 65532, CA certificates, libraries resolve" baton_image_rootfs_ok
  baton_image_check "batond --version in the image" baton_image_version "batond $version" --version
  baton_image_check "baton-mcp --version in the image" \
    baton_image_version "baton-mcp $version" --entrypoint /usr/local/bin/baton-mcp --version
  baton_image_check "batond serves from the image (read-only root, no capabilities) and batond probe passes" \
    baton_image_serves hardened
  baton_image_check "batond serves with the image's defaults (embedded store in /var/lib/baton as user 65532)" \
    baton_image_serves default

  buildah umount "$mounted_ctr" >/dev/null 2>&1 || true
  buildah rm "$mounted_ctr" >/dev/null 2>&1 || true
  rm -rf "$IMAGE_WORK"
  if ((IMAGE_FAILED)); then check_failed "image checks" 1; fi
}
