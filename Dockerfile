# syntax=docker/dockerfile:1
#
# jwtd's container image: the release binary on distroless, run as an
# unprivileged user.
#
#   docker build -t jwtd:0.1.0 .
#   docker run --rm -v "$PWD/my-jwtd.toml:/etc/jwtd/jwtd.toml:ro" \
#       -v jwtd-run:/run/jwtd -p 9090:9090 jwtd:0.1.0
#
# The default command reads /etc/jwtd/jwtd.toml: mount a configuration there
# (deploy/kubernetes/configmap.yaml has a complete one). Any other argument
# list replaces the command, e.g. `docker run jwtd:0.1.0 serve --help`.
# The binary needs no runtime files: the development key set is compiled in
# (used, with a warning, only when no key source is configured).
#
# tests/it/deploy.rs parses this file with Docker's own parser, lints it with
# hadolint and checks the points that must agree with deploy/kubernetes/.

############################################################################
# Build: the release binary, exactly as `cargo build --release --locked`.
############################################################################
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Only what the build reads (see .dockerignore): the manifest and lock file,
# the sources, the targets Cargo.toml declares, and the embedded dev key set.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
COPY deploy/dev/jwks.json ./deploy/dev/jwks.json

# Dependency caching: BuildKit cache mounts keep the crates.io downloads and
# the compiled dependencies between builds (a source change recompiles only
# jwtd itself), without the fragile "dummy main.rs" layer trick. The target
# directory is a cache mount, so the binary is copied out in the same step.
# /out/run/jwtd becomes the (empty) socket directory of the final image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin jwtd \
    && install -D -m 0755 target/release/jwtd /out/jwtd \
    && install -d -m 0750 /out/run/jwtd

############################################################################
# Runtime: distroless glibc + libgcc (what a Rust binary links), no shell,
# no package manager; `nonroot` is uid/gid 65532.
############################################################################
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="jwtd" \
      org.opencontainers.image.description="JWT verification sidecar: a Unix-socket daemon that answers whether a token is valid and what it says" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=build /out/jwtd /usr/local/bin/jwtd
# The socket directory, owned by the runtime user, for `docker run` without a
# volume there; in Kubernetes an emptyDir shared with the app replaces it.
COPY --from=build --chown=65532:65532 /out/run/jwtd /run/jwtd

USER 65532:65532

# The admin listener (admin_addr / --admin-addr: /metrics, /livez, /readyz).
# The verification fronts are Unix sockets under /run/jwtd, not ports.
EXPOSE 9090

# jwtd drains on SIGTERM within shutdown_grace (10 s by default) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/jwtd"]
CMD ["serve", "--config", "/etc/jwtd/jwtd.toml"]
