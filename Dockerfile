# Builds the single `caliop` binary; the same image runs every role
# (api, worker, smtp) chosen by its command.
FROM node:20-bookworm-slim AS admin
WORKDIR /src
COPY openapi ./openapi
COPY web-admin/package.json web-admin/package-lock.json ./web-admin/
RUN cd web-admin && npm ci --no-audit --no-fund
COPY web-admin ./web-admin
RUN cd web-admin && npm run build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin caliop

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/caliop caliop && mkdir -p /var/lib/caliop && chown caliop /var/lib/caliop
COPY --from=build /src/target/release/caliop /usr/local/bin/caliop
COPY --from=admin /src/web-admin/dist /usr/share/caliop/admin
COPY --from=admin /src/web-admin/dist-mail /usr/share/caliop/mail
USER caliop
ENV CALIOP_DATA_DIR=/var/lib/caliop CALIOP_LOG_FORMAT=json CALIOP_ADMIN_ASSETS_DIR=/usr/share/caliop/admin CALIOP_WEBMAIL_ASSETS_DIR=/usr/share/caliop/mail
ENTRYPOINT ["caliop"]
CMD ["serve"]
