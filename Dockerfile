# Tollgate in a container: one static-ish binary on Debian slim, run as an unprivileged user.
#   docker build -t tollgate .
#   docker run -p 8080:8080 -v tollgate:/var/lib/tollgate -e OPENAI_API_KEY tollgate
# On first start it sets up the SQLite database in /var/lib/tollgate and prints the admin key
# once. For several replicas on PostgreSQL and Redis see deploy/compose.yaml and docs/deploy.md.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tollgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tollgate --create-home tollgate
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
USER tollgate
WORKDIR /var/lib/tollgate
EXPOSE 8080
ENTRYPOINT ["tollgate"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
