# The ingress controller: Traefik built from the Go module proxy (make cluster-tools).
FROM scratch
COPY traefik /traefik
ENTRYPOINT ["/traefik"]
