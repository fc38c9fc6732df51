# syntax=docker/dockerfile:1
#
# moat's container image: one static binary on distroless, run as the
# non-root user 65532 (distroless "nonroot"). Build with BuildKit (the
# default builder since Docker Engine 23.0):
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t moat .
#
# and run it with configs/compose.yaml, which gives it the host network, only
# CAP_NET_ADMIN and CAP_NET_BIND_SERVICE, no-new-privileges and a read-only
# root filesystem.
#
# Capabilities, and why they are file capabilities. moat needs CAP_NET_ADMIN
# (its nftables table, over netlink) and CAP_NET_BIND_SERVICE (the proxy on
# :80 and :443). A non-root process gets neither from `cap_add` alone:
#  - Docker does not put added capabilities in the ambient set, so they do not
#    survive the execve of the entrypoint by a non-root user. Ambient support
#    was merged and reverted before 1.13 (moby/moby#26979, #27737); the issue
#    (moby/moby#50083) and its pull request (moby/moby#52830) are still open.
#  - So the binary carries them as file capabilities (setcap below), limited
#    by the container's bounding set: with `cap_drop: [ALL]` and
#    `cap_add: [NET_ADMIN, NET_BIND_SERVICE]` it gets exactly those two.
#  - With no-new-privileges the kernel grants a file capability at execve only
#    if the process already had it in its permitted set. From 2018
#    (moby/moby#36587) until 24.0.5, Docker emptied the permitted set of
#    non-root containers, so setcap + no-new-privileges failed there
#    (moby/moby#45491). Docker Engine 25.0, and 24.0 from the backport on
#    (24.0.6), keeps the added capabilities permitted until the execve
#    (moby/moby#45511, #46221): the file capabilities are then no new
#    privilege and this image works with no-new-privileges.
#    cmd/moat/image_test.go (TestFileCapsUnderNoNewPrivileges) replays both
#    behaviours on the running kernel.
#  - On an older engine moat starts without them. The shipped configuration
#    sets firewall.backend: nftables so that moat then refuses to start
#    instead of silently enforcing nothing.
# The classic builder dropped file capabilities on COPY --from
# (moby/moby#38132); BuildKit keeps them.
#
# Reading Docker's containers directory needs more than a non-root user:
# Docker writes config.v2.json as root:root 0600 (and logs 0640 in 0710
# directories), and the only capability that reads them,
# CAP_DAC_READ_SEARCH, also unlocks open_by_handle_at in Docker's default
# seccomp profile, the call behind the "shocker" escape. compose.yaml
# therefore runs moat as uid 0 *with the same two capabilities and nothing
# else*: root then reads root's files by ownership, and has no
# CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_SETUID or any other power. Hosts that do
# not follow container logs can drop `user:` there and keep 65532.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# VERSION is what `moat version` prints (main.version in cmd/moat).
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# cmd/moat/image_test.go runs this very command (TestStaticBuild): keep it
# one line.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/moat ./cmd/moat
RUN setcap cap_net_admin,cap_net_bind_service=ep /out/moat \
 && setcap -v cap_net_admin,cap_net_bind_service=ep /out/moat \
 && install -d -m 0770 /out/state /out/run

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="moat" \
      org.opencontainers.image.description="Guards a Docker host: follows host and container logs, bans repeat offenders in nftables, and fronts services with a rate-limiting TLS proxy." \
      org.opencontainers.image.source="https://github.com/moatproj/moat" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/moat /usr/local/bin/moat
COPY configs/docker.yaml /etc/moat/moat.yaml
# Owned by 65532 and group 0, mode 0770: writable by the image's user and
# by uid 0 without CAP_DAC_OVERRIDE (compose.yaml's user 0:0).
COPY --from=build --chown=65532:0 /out/state /var/lib/moat
COPY --from=build --chown=65532:0 /out/run /run/moat
# The CLI (and so the health check) finds the daemon here whatever the user.
ENV MOAT_SOCKET=/run/moat/moat.sock
VOLUME ["/var/lib/moat"]
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/moat", "status"]
ENTRYPOINT ["/usr/local/bin/moat"]
CMD ["run"]
