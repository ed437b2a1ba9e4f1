# tokengate in a container: a release build in the Rust image, then only the binary and the
# example configuration on Debian slim, run as an unprivileged user.
#
#   docker build --build-arg TOKENGATE_BUILD_COMMIT=$(git rev-parse --short HEAD) -t tokengate .
#   docker run -p 8080:8080 -p 8081:8081 -v tokengate-data:/var/lib/tokengate \
#     -v $PWD/tokengate.toml:/etc/tokengate/tokengate.toml:ro tokengate
#   docker run --rm -v tokengate-data:/var/lib/tokengate tokengate user add ann@example.com
#
# The configuration is /etc/tokengate/tokengate.toml (the example until you mount your own),
# found by tokengate's search path; the SQLite database is /var/lib/tokengate/tokengate.db
# (TOKENGATE_DATA_DIR) unless the configuration names database.url. Both listeners bind
# 0.0.0.0 inside the container (the TOKENGATE_*__LISTEN variables below); publish the admin
# port only where its callers are.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# .git is not in the build context (.dockerignore): the commit --version prints comes from here.
ARG TOKENGATE_BUILD_COMMIT=unknown
ENV TOKENGATE_BUILD_COMMIT=${TOKENGATE_BUILD_COMMIT}
RUN cargo build --release --locked --bin tokengate

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 tokengate \
 && useradd --system --uid 10001 --gid tokengate --no-create-home \
      --home-dir /var/lib/tokengate --shell /usr/sbin/nologin tokengate \
 && install -d -o tokengate -g tokengate -m 0750 /var/lib/tokengate
COPY --from=build /src/target/release/tokengate /usr/local/bin/tokengate
COPY config/tokengate.example.toml /etc/tokengate/tokengate.toml
ENV TOKENGATE_DATA_DIR=/var/lib/tokengate \
    TOKENGATE_PROXY__LISTEN=0.0.0.0:8080 \
    TOKENGATE_ADMIN__LISTEN=0.0.0.0:8081
USER tokengate:tokengate
WORKDIR /var/lib/tokengate
VOLUME /var/lib/tokengate
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
ENTRYPOINT ["tokengate"]
CMD ["serve"]
