#!/usr/bin/env bash
# A Docker engine for `make test` and `make images`, started only when none answers.
#
#   docker/engine.sh start   use the running engine, or install Debian's docker.io and start dockerd
#   docker/engine.sh stop    stop the dockerd that `start` started (an engine it found is left alone)
#
# dockerd's pid and log live in .tools/docker/. Starting one needs root (make test runs as root in
# CI); without root, start an engine yourself (or set DOCKER_HOST) and this script uses it.
set -euo pipefail

DOCKER=${DOCKER:-docker}
state="$(cd "$(dirname "$0")/.." && pwd)/.tools/docker"
pidfile="$state/dockerd.pid"
started="$state/started-here"

log() { echo "docker-engine: $*" >&2; }
answers() { "$DOCKER" info >/dev/null 2>&1; }

start() {
    if command -v "$DOCKER" >/dev/null && answers; then
        log "using the running engine ($("$DOCKER" version --format '{{.Server.Version}}'))"
        return
    fi
    if [[ $(id -u) != 0 ]]; then
        log "no Docker engine answers and starting one needs root: start dockerd (or set DOCKER_HOST) and retry"
        exit 1
    fi
    if ! command -v dockerd >/dev/null; then
        log "installing Debian's docker.io"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2
    fi
    mkdir -p "$state"
    log "starting dockerd (log: $state/dockerd.log)"
    # Its own session: Ctrl-C in make does not reach it, `stop` does.
    setsid dockerd --pidfile "$pidfile" >"$state/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 60); do
        if answers; then
            touch "$started"
            log "dockerd $("$DOCKER" version --format '{{.Server.Version}}') answers"
            return
        fi
        sleep 1
    done
    log "dockerd did not answer within 60 s; its log:"
    tail -n 20 "$state/dockerd.log" >&2
    exit 1
}

stop() {
    if [[ ! -f $started ]]; then
        return
    fi
    rm -f "$started"
    local pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ -n $pid ]] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || { log "stopped dockerd"; return; }
            sleep 1
        done
        log "dockerd did not stop within 30 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop" >&2
        exit 2
        ;;
esac
