# Cluster DNS: CoreDNS built from the Go module proxy (make cluster-tools).
FROM scratch
COPY coredns /coredns
USER 65532:65532
ENTRYPOINT ["/coredns"]
