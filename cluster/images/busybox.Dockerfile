# The helper pods of local-path-provisioner (mkdir, rm): Debian's busybox-static.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENTRYPOINT ["/bin/sh"]
