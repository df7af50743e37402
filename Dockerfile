# Build stage: the official Rust image, release build of the tocsin binary.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The loopback fakes are a workspace member: the demo in the binary plays against them.
COPY fakes ./fakes
RUN cargo build --release --locked --bin tocsin

# Run stage: distroless (no shell), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="tocsin" \
      org.opencontainers.image.source="tocsin" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.description="Pages on-call responders in Telegram within seconds of an unapproved change to the official accounts"
WORKDIR /app
COPY --from=build /src/target/release/tocsin /usr/local/bin/tocsin
COPY config/tocsin.example.toml /app/config/tocsin.example.toml
VOLUME ["/app/state"]
EXPOSE 8080
# No shell in the image: the binary checks itself. Assumes general.listen = "0.0.0.0:8080".
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tocsin", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
USER nonroot
ENTRYPOINT ["/usr/local/bin/tocsin"]
CMD ["run", "--config", "/app/config/tocsin.toml"]
