# Builds and runs the leafsync daemon.
#   docker build -t leafsync .
#   docker run --rm -v leafsync-data:/data leafsync tool gen-state --datadir /data --accounts 1000
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin leafsync

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data leafsync
COPY --from=build /src/target/release/leafsync /usr/local/bin/leafsync
USER leafsync
VOLUME /data
# devp2p (TCP) and discv5 (UDP); leafsync's default port avoids the execution client's 30303.
EXPOSE 30403/tcp 30403/udp
ENTRYPOINT ["leafsync"]
CMD ["--help"]
