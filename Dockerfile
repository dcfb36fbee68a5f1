# Builds and runs the leafsync daemon.
#   docker build -t leafsync .
#   docker run -d --name leafsync -v leafsync-data:/data -p 30403:30403/tcp -p 30403:30403/udp \
#       leafsync run --config /etc/leafsync/leafsync.toml --chain sepolia --el-rpc ws://HOST:8546
#   docker exec leafsync leafsync status
# The datadir defaults to /data/leafsync-data (the volume); copy and edit
# /etc/leafsync/leafsync.toml (every key at its default, see docs/configuration.md) to change more.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin leafsync

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data leafsync \
    && mkdir -p /data && chown leafsync /data
COPY --from=build /src/target/release/leafsync /usr/local/bin/leafsync
COPY config/leafsync.toml /etc/leafsync/leafsync.toml
USER leafsync
WORKDIR /data
VOLUME /data
# devp2p (TCP) and discv5 (UDP); leafsync's default port avoids the execution client's 30303.
EXPOSE 30403/tcp 30403/udp
ENTRYPOINT ["leafsync"]
CMD ["run", "--config", "/etc/leafsync/leafsync.toml"]
