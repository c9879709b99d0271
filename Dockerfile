# syntax=docker/dockerfile:1
#
# RustyGate's image: the static (musl) `rustygate` gateway and the `mock-backend` test server,
# shipped on `scratch` as a non-root user. The build stage runs the same build as `make release`.
#
#   docker build -t rustygate:dev .                       # or: make image
#   docker run --rm -p 8080:8080 -p 8081:8081 rustygate:dev
#   docker run --rm -p 8080:8080 -p 8081:8081 -v "$PWD/gateway.yaml:/config/gateway.yaml:ro" \
#       rustygate:dev --config /config/gateway.yaml
#
# What is in the final image (and nothing else: no shell, no libc, no curl):
#   /rustygate, /mock-backend          static binaries (mimalloc allocator, stripped)
#   /config/default.yaml               the default config (also embedded in the binary)
#   /config/rustygate.lab.yaml         the lab config (compose/rustygate.lab.yaml)
#   /etc/ssl/certs/ca-certificates.crt CA roots for the gateway's own https calls (JWKS, OTLP)
# The health check is `rustygate health`, a built-in probe of the admin /healthz: no curl needed.
# See docs/deployment.md.

ARG RUST_VERSION=1.95

# --- build -----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build

ARG TARGET=x86_64-unknown-linux-musl
# WASM plugin support (wasmer); `--build-arg FEATURES=` builds a smaller image without it.
ARG FEATURES="--features rustygate/wasm"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# musl-gcc compiles the C parts (aws-lc-sys for rustls, mimalloc) for the musl target.
# musl-tools is not pinned: the rust image's Debian release fixes it, and pins break on updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

WORKDIR /src

# 1. Dependencies only: the manifests and stub sources, so this (slow) layer is rebuilt only
#    when Cargo.toml / Cargo.lock change, not on every source edit. Every workspace member's
#    Cargo.toml must be listed here (add new members when the workspace grows).
COPY Cargo.toml Cargo.lock ./
COPY gateway/Cargo.toml gateway/Cargo.toml
COPY mock-backends/Cargo.toml mock-backends/Cargo.toml
RUN mkdir -p gateway/src mock-backends/src \
 && echo 'fn main() {}' > gateway/src/main.rs && : > gateway/src/lib.rs \
 && echo 'fn main() {}' > mock-backends/src/main.rs && : > mock-backends/src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" -p rustygate -p mock-backends ${FEATURES} \
 && rm -rf gateway/src mock-backends/src

# 2. The real sources. `touch` makes them newer than the stub build's outputs: COPY keeps the
#    files' original times, which cargo could otherwise take for "already built". The image
#    only makes sense with static binaries: the build fails if they are not.
COPY config config
COPY gateway gateway
COPY mock-backends mock-backends
RUN touch gateway/src/main.rs gateway/src/lib.rs mock-backends/src/main.rs mock-backends/src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" -p rustygate -p mock-backends ${FEATURES} \
 && mkdir -p /out \
 && cp "target/${TARGET}/release/rustygate" "target/${TARGET}/release/mock-backend" /out/ \
 && for b in /out/rustygate /out/mock-backend; do \
      linkage="$(ldd "$b" 2>&1 || true)"; \
      case "$linkage" in \
        *"statically linked"*|*"not a dynamic executable"*) ;; \
        *) echo "$b is not statically linked: $linkage" >&2; exit 1 ;; \
      esac; \
    done \
 && /out/rustygate --version \
 && /out/rustygate check --config config/default.yaml \
 && ls -l /out

# --- runtime ---------------------------------------------------------------------------------
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="rustygate" \
      org.opencontainers.image.description="RustyGate: an observable HTTP reverse proxy / API gateway (plus its mock-backend test server)" \
      org.opencontainers.image.source="https://github.com/rustygate/rustygate" \
      org.opencontainers.image.url="https://github.com/rustygate/rustygate" \
      org.opencontainers.image.documentation="https://github.com/rustygate/rustygate/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/rustygate /rustygate
COPY --from=build /out/mock-backend /mock-backend
COPY config/ /config/
COPY compose/rustygate.lab.yaml /config/rustygate.lab.yaml

ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# `rustygate` without --config reads config/default.yaml relative to the working directory.
WORKDIR /
# The distroless "nonroot" uid/gid; no /etc/passwd is needed for a numeric user.
USER 65532:65532
# Proxy listener, admin listener (/healthz, /readyz, /metrics, /admin/*).
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
# Probes http://127.0.0.1:8081/healthz; if the admin listener is elsewhere, override it:
#   HEALTHCHECK CMD ["/rustygate", "health", "--url", "http://127.0.0.1:9901/healthz"]
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 CMD ["/rustygate", "health"]
ENTRYPOINT ["/rustygate"]
CMD ["--config", "/config/default.yaml"]
