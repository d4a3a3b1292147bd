#!/usr/bin/env bash
# The Python base of every image, for machines that cannot pull it (no registry reachable).
#
#   docker/base-image.sh resolve   print the base to build on, building the Debian one if needed
#   docker/base-image.sh build     build the Debian one now (make base-image)
#
# `resolve` prints $PYTHON_IMAGE when it is set; else the pinned python image (PINNED below, the
# default of every Dockerfile's PYTHON_IMAGE argument) when the engine has it or can pull it;
# else the Debian base, built once. The Debian base is Debian bookworm from Debian's own packages
# (debootstrap, minbase) with python3.11, pip and venv, laid out like the python image:
# python, python3 and python3.11 in /usr/local/bin, pip allowed to install (no EXTERNALLY-MANAGED),
# LANG C.UTF-8. It carries this machine's CA bundle, so pip and uv inside a build trust what the
# machine trusts (a TLS-inspecting proxy's CA included). Its Python is bookworm's 3.11.2, not the
# python image's 3.11.14.
#
# The image is labelled with the SHA-256 of this script: an unchanged recipe is never rebuilt,
# a changed one is. debootstrap needs root; it takes about 2.5 minutes and 300 MB.
set -euo pipefail

PINNED=python:3.11.14-slim-bookworm
BASE=${BASE_IMAGE_TAG:-predmaint/python:3.11-bookworm}  # another tag: a trial build (benchmarks/images.py)
DOCKER=${DOCKER:-docker}
SUITE=bookworm
PACKAGES=python3.11,python3-pip,python3-venv,ca-certificates
here=$(cd "$(dirname "$0")" && pwd)
recipe=$(sha256sum "$here/base-image.sh" | cut -c1-16)

log() { echo "base-image: $*" >&2; }

# The mirror apt uses on this machine (deb822 or one-line sources); debootstrap's default otherwise.
mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v security | head -n 1 || true)
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "$uri"
}

built_recipe() {
    "$DOCKER" image inspect --format '{{ index .Config.Labels "org.predmaint.base-recipe" }}' "$BASE" 2>/dev/null || true
}

build() {
    if [[ $(id -u) != 0 ]]; then
        log "debootstrap needs root: run 'sudo make base-image'"
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
    fi
    # Global, not local: the EXIT trap runs after this function has returned.
    root=$(mktemp -d /var/tmp/predmaint-base.XXXXXX)
    trap 'rm -rf "${root:-}"' EXIT
    log "debootstrap $SUITE (minbase + $PACKAGES) into $root"
    # shellcheck disable=SC2046
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" $(mirror) >&2
    ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3.11"
    ln -sf python3.11 "$root/usr/local/bin/python3"
    ln -sf python3.11 "$root/usr/local/bin/python"
    rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    fi
    # Nothing of the build machine's package state: lists, caches, logs.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/tmp/* "$root"/root/.cache
    log "importing $BASE"
    tar -C "$root" --numeric-owner -c . | "$DOCKER" import \
        --change "LABEL org.predmaint.base-recipe=$recipe" \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV LANG=C.UTF-8" \
        --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
        --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
        --change 'CMD ["python3"]' \
        - "$BASE" >&2
}

ensure_built() {
    if [[ $(built_recipe) == "$recipe" ]]; then
        log "$BASE is current (recipe $recipe)"
    else
        build
    fi
}

case "${1:-}" in
    resolve)
        if [[ -n ${PYTHON_IMAGE:-} ]]; then
            echo "$PYTHON_IMAGE"
        elif "$DOCKER" image inspect "$PINNED" >/dev/null 2>&1 || "$DOCKER" pull -q "$PINNED" >/dev/null 2>&1; then
            echo "$PINNED"
        else
            log "$PINNED cannot be pulled: building on $BASE (Debian packages) instead"
            ensure_built
            echo "$BASE"
        fi
        ;;
    build) ensure_built ;;
    *)
        echo "usage: $0 resolve|build" >&2
        exit 2
        ;;
esac
