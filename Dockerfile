# moat's container image: a static binary on distroless, running as a
# non-root user. The only capability it needs is CAP_NET_ADMIN (for its
# nftables table), given to the binary as a file capability, so the
# container runs with:
#
#   docker run -d --name moat --network host --cap-drop ALL --cap-add NET_ADMIN \
#     --group-add adm -v /var/log:/var/log:ro -v moat-state:/var/lib/moat \
#     -v /run/moat:/run/moat moat
#
# (--network host so the table lands in the host's network namespace;
# group adm to read /var/log/auth.log.)
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/moat ./cmd/moat \
 && setcap cap_net_admin=ep /out/moat \
 && mkdir -p /out/state /out/run

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/moat /usr/local/bin/moat
COPY --from=build --chown=65532:65532 /out/state /var/lib/moat
COPY --from=build --chown=65532:65532 /out/run /run/moat
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/moat"]
CMD ["run"]
