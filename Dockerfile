# docker build -t tokenbroker .
# Build stage: a static binary, no cgo.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/tokenbroker ./cmd/tokenbroker

# Final stage: no shell, no package manager, a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokenbroker /usr/local/bin/tokenbroker
USER nonroot:nonroot
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/tokenbroker"]
CMD ["serve"]
