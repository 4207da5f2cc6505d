# Shortcuts for developers. Each target is one plain go command, shown
# below it, so make is never required: CI runs .ci/run, which needs only Go.
#
#   make build    static binary in bin/, built like the Dockerfile builds it
#   make test     the README's test command
#   make lint     gofmt check, go vet, staticcheck (pinned)
#   make demo     the whole flow against a simulated IMS and AEM
#   make image    the container image (needs a container engine)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
# Keep in step with .ci/run (deploy/ci_test.go checks).
STATICCHECK_VERSION := v0.8.2

LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build test lint fmt-check vet staticcheck demo image clean

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/aemproxy ./cmd/aemproxy

test:
	go test -race ./...

lint: fmt-check vet staticcheck

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	go vet ./...

staticcheck:
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

demo:
	go run ./cmd/aemproxy demo

image:
	docker build -t aemproxy:$(VERSION) --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) .

clean:
	rm -rf bin
