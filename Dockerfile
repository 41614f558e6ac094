# Builds the single `caliop` binary; the same image runs every role
# (api, worker, smtp) chosen by its command.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin caliop

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/caliop caliop && mkdir -p /var/lib/caliop && chown caliop /var/lib/caliop
COPY --from=build /src/target/release/caliop /usr/local/bin/caliop
USER caliop
ENV CALIOP_DATA_DIR=/var/lib/caliop CALIOP_LOG_FORMAT=json
ENTRYPOINT ["caliop"]
CMD ["serve"]
