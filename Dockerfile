# syntax=docker/dockerfile:1
#
# aemproxy as a container image: one static binary on an empty base, run as
# an unprivileged user. deploy/dockerfile_test.go and dockerbuild_linux_test.go
# check this file without a container engine: COPY sources exist and survive
# .dockerignore, the go build line below builds a static binary that runs, and
# the final USER is not root.
#
# Build:
#   docker build -t aemproxy \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" .
#
# Run (credentials in ./secrets; mount the directory, not the file, so that
# saving a new file over the old one reaches the container; --user lets the
# process read files that only you can read, chmod 600):
#   docker run --rm --user "$(id -u):$(id -g)" \
#     -p 127.0.0.1:8080:8080 -p 127.0.0.1:9090:9090 \
#     -v "$PWD/secrets:/etc/aemproxy/secrets:ro" aemproxy \
#     --upstream https://author-p12345-e67890.adobeaemcloud.com \
#     --credentials /etc/aemproxy/secrets/service-credentials.json

# The build stage has the Go toolchain. Pin it by digest in your own registry
# mirror if you need bit-for-bit reproducible builds.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
# Set by BuildKit for the platform being built (--platform); empty means the
# build machine's own.
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=
# Static (no cgo, so no libc and no dynamic loader), without local paths or
# debug symbols; the version and commit are what `aemproxy version` prints.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/aemproxy ./cmd/aemproxy
# A passwd and group entry for the unprivileged user the image runs as, so
# that tools that map uids to names (ps, id, audit logs) show one.
RUN echo 'aemproxy:x:65532:65532:aemproxy:/nonexistent:/sbin/nologin' > /out/passwd \
 && echo 'aemproxy:x:65532:' > /out/group

# Runtime base: scratch rather than gcr.io/distroless/static-debian12:nonroot.
# A distroless base would have to be pinned by digest, and no current digest
# could be verified when this file was written (no registry access); scratch
# needs no digest. It holds only what aemproxy needs: the binary, the CA
# certificates for IMS and AEM (TLS), and passwd/group entries for the user.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="aemproxy" \
      org.opencontainers.image.description="Authenticating reverse proxy for AEM as a Cloud Service" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/aemproxy /usr/local/bin/aemproxy
# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd
# lookup.
USER 65532:65532
# 8080: the proxy; 9090: /healthz, /readyz and /metrics.
EXPOSE 8080 9090
# Outside a container aemproxy listens on loopback only. Inside one it must
# listen on all interfaces of the container to be reachable through published
# ports or a Service, so the image says so explicitly. Whoever can connect
# acts as the route's AEM technical account: publish the ports on loopback
# (-p 127.0.0.1:8080:8080), or restrict inbound traffic with a firewall or a
# Kubernetes NetworkPolicy (deploy/kubernetes/networkpolicy.yaml). A config
# file's listen keys are overridden by these variables: set them to "" (or
# pass --listen) to let the file decide.
ENV AEMPROXY_LISTEN=0.0.0.0:8080 \
    AEMPROXY_ADMIN_LISTEN=0.0.0.0:9090
# No HEALTHCHECK: orchestrators probe GET /healthz (liveness) and GET /readyz
# (readiness) on the admin port themselves, and scratch has no curl.
ENTRYPOINT ["/usr/local/bin/aemproxy"]
