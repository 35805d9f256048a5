# syntax=docker/dockerfile:1
# Build: docker build -t twostep .
# Run:   docker run -p 8080:8080 -v twostep-data:/data -v $PWD/users:/etc/twostep:ro -e UPSTREAM=app:3000 twostep
#        (users/ holds users.yml; see README, Operations: Docker)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/caddy ./cmd/caddy

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin twostep \
	&& mkdir -p /data /config /etc/caddy /etc/twostep && chown twostep:twostep /data /config
COPY --from=build /out/caddy /usr/bin/caddy
COPY examples/docker.Caddyfile /etc/caddy/Caddyfile
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config
VOLUME ["/data"]
USER twostep
EXPOSE 8080
ENTRYPOINT ["/usr/bin/caddy"]
CMD ["run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
