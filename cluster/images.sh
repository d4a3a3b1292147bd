#!/usr/bin/env bash
# The cluster's own images, for a node that cannot pull any: each upstream image the cluster or the
# MLflow stack needs is rebuilt here, from a binary built from the Go module proxy (make
# cluster-tools) or from Debian's packages on the project's Debian base (docker/base-image.sh).
#
#   cluster/images.sh build [NAME...]   build the ones missing (or whose recipe changed)
#   cluster/images.sh list         print their names
#   cluster/images.sh name NAME    print the image of NAME (pause, coredns, traefik, ...)
#   cluster/images.sh render FILE KEY=VALUE...   print FILE with ${KEY} and ${IMAGE_<NAME>} filled in
#
#   replaces                          with
#   registry.k8s.io/pause             pause.c of k8s.io/kubernetes, gcc -static, FROM scratch
#   coredns/coredns                   github.com/coredns/coredns, FROM scratch
#   ingress-nginx's controller        Traefik (its Ingress NGINX provider serves class nginx)
#   rancher/local-path-provisioner    github.com/rancher/local-path-provisioner, FROM scratch
#   busybox (its helper pods)         Debian's busybox-static, FROM scratch
#   postgres:16.10-alpine             Debian's postgresql-15 (bookworm has no 16), same env contract
#   minio/minio (server and mc)       github.com/minio/minio and github.com/minio/mc on the Debian base
#   eclipse-mosquitto                 Debian's mosquitto on the Debian base
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/cluster"
bin="$root/.tools/cluster/bin"
DOCKER=${DOCKER:-docker}

# name → tag; the versions are those of the binaries or packages inside.
declare -A TAGS=(
    [pause]=predmaint/cluster-pause:3.10
    [coredns]=predmaint/cluster-coredns:1.15.0
    [traefik]=predmaint/cluster-traefik:3.6.12
    [local-path]=predmaint/cluster-local-path:0.0.37
    [busybox]=predmaint/cluster-busybox:1.35
    [postgres]=predmaint/cluster-postgres:15-bookworm
    [minio]=predmaint/cluster-minio:2026-02-12
    [mosquitto]=predmaint/cluster-mosquitto:2-bookworm
)
ORDER=(pause coredns traefik local-path busybox postgres minio mosquitto)

log() { echo "cluster-images: $*" >&2; }

# The recipe of an image: its Dockerfile and every file copied into it.
recipe() {
    local name=$1
    cat "$here/images/$name".* | sha256sum | cut -c1-16
}

build_one() {
    local name=$1 tag=${TAGS[$1]} context sum
    sum=$(recipe "$name")
    if [[ $($DOCKER image inspect --format '{{index .Config.Labels "org.predmaint.recipe"}}' "$tag" 2>/dev/null) == "$sum" ]]; then
        return
    fi
    log "building $tag"
    context=$(mktemp -d)
    trap 'rm -rf "$context"' RETURN
    cp "$here/images/$name".* "$context/" 2>/dev/null || true
    case $name in
    pause)
        local src
        src=$(cd "$here/k8s" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' k8s.io/kubernetes)
        gcc -Os -static -DVERSION=v3.10 -o "$context/pause" "$src/build/pause/linux/pause.c"
        strip "$context/pause"
        ;;
    coredns | traefik | local-path)
        cp "$bin/${name/local-path/local-path-provisioner}" "$context/$name"
        ;;
    busybox)
        (cd "$context" && apt-get download -qq busybox-static 2>/dev/null && dpkg-deb -x busybox-static_*.deb pkg)
        cp "$context/pkg/bin/busybox" "$context/busybox"
        ;;
    minio)
        cp "$bin/minio" "$bin/mc" "$context/"
        ;;
    esac
    [[ -n ${base:-} ]] || base=$("$root/docker/base-image.sh" resolve)
    if ! $DOCKER build --network host --build-arg "BASE=$base" --label "org.predmaint.recipe=$sum" \
        -t "$tag" -f "$here/images/$name.Dockerfile" "$context" >"$context/build.log" 2>&1; then
        tail -n 30 "$context/build.log" >&2
        log "building $tag failed"
        return 1
    fi
}

case ${1:-} in
build)
    shift
    for name in "${@:-${ORDER[@]}}"; do
        [[ -n ${TAGS[$name]:-} ]] || { log "no image named '$name' (${ORDER[*]})"; exit 2; }
        build_one "$name"
    done
    ;;
list)
    for name in "${ORDER[@]}"; do
        echo "${TAGS[$name]}"
    done
    ;;
name)
    [[ -n ${TAGS[${2:-}]:-} ]] || { log "no image named '${2:-}' (${ORDER[*]})"; exit 2; }
    echo "${TAGS[$2]}"
    ;;
render)
    file=$2
    shift 2
    script=()
    for name in "${ORDER[@]}"; do
        key=IMAGE_$(echo "$name" | tr 'a-z-' 'A-Z_')
        script+=(-e "s|\${$key}|${TAGS[$name]}|g")
    done
    for pair in "$@"; do
        script+=(-e "s|\${${pair%%=*}}|${pair#*=}|g")
    done
    sed "${script[@]}" "$file"
    ;;
*)
    sed -n '2,10s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
