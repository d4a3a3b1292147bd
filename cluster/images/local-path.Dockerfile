# Dynamic volumes: Rancher's local-path-provisioner built from the Go module proxy.
FROM scratch
COPY local-path /local-path-provisioner
USER 65532:65532
ENTRYPOINT ["/local-path-provisioner"]
