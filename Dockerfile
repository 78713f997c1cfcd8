# Build: docker build -t tokenbroker .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tokenbroker ./cmd/tokenbroker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokenbroker /usr/local/bin/tokenbroker
USER nonroot:nonroot
# NATS_URL is set by the deployment; HTTP listens on all interfaces inside the container.
ENV HTTP_ADDR=0.0.0.0:5000
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/tokenbroker"]
CMD ["serve"]
