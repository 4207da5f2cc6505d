# syntax=docker/dockerfile:1
# Build: docker build -t aemproxy --build-arg VERSION=$(git describe --always) .
# Run:   docker run -p 8080:8080 -p 9090:9090 -v $PWD/creds.json:/etc/aemproxy/credentials.json:ro aemproxy \
#          --upstream https://author-p1-e2.adobeaemcloud.com --credentials /etc/aemproxy/credentials.json
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/aemproxy ./cmd/aemproxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/aemproxy /usr/local/bin/aemproxy
USER nonroot:nonroot
EXPOSE 8080 9090
# Inside a container the proxy must listen beyond loopback to be reachable;
# restrict who can reach it with the network (see README, Security notes).
ENV AEMPROXY_LISTEN=0.0.0.0:8080 AEMPROXY_ADMIN_LISTEN=0.0.0.0:9090
ENTRYPOINT ["/usr/local/bin/aemproxy"]
