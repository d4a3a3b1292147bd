# The pod sandbox: Kubernetes' own pause.c (k8s.io/kubernetes build/pause), compiled statically.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
