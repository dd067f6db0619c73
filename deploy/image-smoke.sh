#!/usr/bin/env bash
# `make image-smoke`: build the images from deploy/Dockerfile without a Docker engine, then run them.
#
#   1. debootstrap a minimal Debian (python3, python3-venv) and import it as the local base image;
#   2. podman build --isolation=chroot each target (gateway, data-service, trainer) on that base;
#   3. buildah run, in each image: `simtrain --help`, `id -u` (must not be 0), then the service's
#      own command with its HEALTHCHECK command against it; in the trainer, its CPU kernels compile.
#
# Optional and slow (minutes; not part of `make test`). Needs root and Debian's podman, buildah and
# debootstrap. Where a CPU build of torch lies in SMOKE_WHEELS (default /opt/wheels), every image
# takes it, the trainer's too: this proves the Dockerfile and the packaging, not the CUDA download.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${SMOKE_WORK:-var/image-smoke}
SUITE=${SMOKE_SUITE:-bookworm}
MIRROR=${SMOKE_MIRROR:-http://deb.debian.org/debian}
TARGETS=${SMOKE_TARGETS:-data-service gateway trainer}
WHEELS=${SMOKE_WHEELS:-/opt/wheels}
REDIS_URL=${SMOKE_REDIS_URL:-redis://127.0.0.1:6379/0}
# The trust store the base image gets: this host's, so pip trusts what this host trusts.
CA_BUNDLE=${SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
BASE=localhost/simtrain-smoke-base:$SUITE
# Service ports inside the images: chroot isolation shares this host's network, so pick free ones.
GATEWAY_PORT=${SMOKE_GATEWAY_PORT:-18731}
DATA_SERVICE_PORT=${SMOKE_DATA_SERVICE_PORT:-50731}

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'image-smoke: %s\n' "$*" >&2; exit 1; }

for tool in podman buildah debootstrap; do
    command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install -y podman buildah debootstrap)"
done
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, and podman storage for the base image)"
mkdir -p "$WORK"

rootfs=$WORK/rootfs-$SUITE
if [ ! -x "$rootfs/usr/bin/python3" ]; then
    step "debootstrap $SUITE into $rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$MIRROR"
fi
if ! podman image exists "$BASE"; then
    step "import $rootfs as $BASE"
    [ -f "$CA_BUNDLE" ] && cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    tar -C "$rootfs" -c . | podman import \
        --change 'CMD ["/bin/bash"]' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        - "$BASE"
fi

build_args=(--build-arg "BASE_IMAGE=$BASE")
if compgen -G "$WHEELS/torch-*+cpu-*.whl" >/dev/null; then
    echo "torch: the CPU wheel in $WHEELS, other packages from PyPI"
    build_args+=(
        --volume "$(realpath "$WHEELS"):/wheels:ro"
        --build-arg PIP_FIND_LINKS=/wheels
        --build-arg CPU_TORCH_INDEX_URL=https://pypi.org/simple
        --build-arg TORCH_INDEX_URL=https://pypi.org/simple
    )
fi

# Runs the image's service command, then its health check until it passes (30 s at most).
service_check() {
    local ctr=$1 target=$2 env=(
        --env "SIMTRAIN_GATEWAY_PORT=$GATEWAY_PORT"
        --env "SIMTRAIN_DATA_SERVICE_PORT=$DATA_SERVICE_PORT"
        --env "SIMTRAIN_DATA_SERVICE_ADDR=127.0.0.1:$DATA_SERVICE_PORT"
        --env "REDIS_URL=$REDIS_URL"
    )
    local service
    case $target in
        gateway) service="python -m gateway" ;;
        data-service) service="python -m data_service" ;;
        trainer) service="" ;;  # the worker needs Redis and jobs; its health check needs only Redis
    esac
    buildah run --isolation chroot "${env[@]}" "$ctr" -- sh -c "
        ${service:+$service > /tmp/service.log 2>&1 & pid=\$!}
        for _ in \$(seq 30); do
            python /opt/simtrain/healthcheck.py $target && ok=1 && break
            sleep 1
        done
        ${service:+kill \$pid; wait \$pid 2>/dev/null; [ -n \"\$ok\" ] || cat /tmp/service.log}
        [ -n \"\$ok\" ]"
}

for target in $TARGETS; do
    image=localhost/simtrain/$target:smoke
    step "podman build --isolation=chroot --target $target -> $image"
    podman build --isolation=chroot --format docker -f deploy/Dockerfile --target "$target" \
        "${build_args[@]}" -t "$image" .
    ctr=$(buildah from "$image")
    trap 'buildah rm "$ctr" >/dev/null' EXIT
    step "buildah run $target: simtrain --help"
    buildah run --isolation chroot "$ctr" -- simtrain --help
    step "buildah run $target: the user is not root"
    uid=$(buildah run --isolation chroot "$ctr" -- id -u)
    [ "$uid" != 0 ] || fail "$target runs as root"
    echo "uid $uid"
    step "buildah run $target: service and health check"
    service_check "$ctr" "$target" || fail "$target: health check failed"
    if [ "$target" = trainer ]; then
        step "buildah run trainer: its CPU kernels compile"
        buildah run --isolation chroot "$ctr" -- python -c \
            "from trainer_service import ops; raise SystemExit(not all(map(ops.library, ('gelu', 'attention'))))" \
            || fail "trainer: its CPU kernels did not compile (no C compiler in the image?)"
    fi
    buildah rm "$ctr" >/dev/null
    trap - EXIT
done
step "image-smoke passed: $TARGETS"
