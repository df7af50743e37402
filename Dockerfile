# tocsin's image. Needs BuildKit (the default builder since Docker 23; `DOCKER_BUILDKIT=1` on
# older engines): it builds only the stages the image uses, so the stage not chosen by BINARY
# below is never pulled or run.
#
# The bases are arguments so that a mirror, or a locally made stand-in, can replace them
# without editing this file.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# Where the binary comes from: `build` compiles the workspace in RUST_IMAGE (the default);
# `prebuilt` takes a binary already built for the runtime base's libc, placed at
# target/container/tocsin in the build context (the container test does this with the
# binary CI has built, since no Rust image can be pulled there).
ARG BINARY=build

# Build stage: the whole workspace, every member crate, less what .dockerignore leaves out.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tocsin \
 && mkdir -p /out/state \
 && cp target/release/tocsin /out/tocsin

FROM scratch AS prebuilt
COPY target/container/tocsin /out/tocsin
# An empty directory, the image's /app/state (a scratch stage has no mkdir).
WORKDIR /out/state

FROM ${BINARY} AS binary

# Run stage: distroless (no shell), non-root.
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="tocsin" \
      org.opencontainers.image.source="tocsin" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.description="Pages on-call responders in Telegram within seconds of an unapproved change to the official accounts"
# The base's user is nonroot, and BuildKit makes WORKDIR directories as the current user: the
# files below are root's, only the state directory is the daemon's.
USER 0:0
WORKDIR /app
COPY --from=binary /out/tocsin /usr/local/bin/tocsin
COPY config/tocsin.example.toml /app/config/tocsin.example.toml
# The state directory exists in the image and belongs to the runtime user: Docker fills a new
# named volume from it, ownership included, so the daemon can write there. Without it the
# volume's root is root's and the first start fails with "Permission denied".
COPY --from=binary --chown=65532:65532 /out/state /app/state
VOLUME ["/app/state"]
EXPOSE 8080
# No shell in the image: the binary checks itself. Assumes general.listen = "0.0.0.0:8080".
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tocsin", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
# distroless's `nonroot`, by number so that an orchestrator's "run as non-root" check can tell.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tocsin"]
CMD ["run", "--config", "/app/config/tocsin.toml"]
