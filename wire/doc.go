// Package wire is what goes over NATS between a token broker and its
// callers: the subject names, a token request as a caller sends it, a
// broker's answer as a caller reads it (a reply, or an error carried in the
// NATS micro error headers and a JSON body), and the token.refreshed and
// token.failed events.
//
// It exists so that both sides agree on bytes from one definition: the
// broker (package messaging) and the Go client (package client) both build
// and read messages here, and a change to the wire format is made once.
// It is also what keeps the client light: wire imports only nats.go (and
// nats.go/micro, for the names of its headers) and the root package, never
// the broker's server side (nats-server, the actors, Prometheus), so an
// application that only asks for tokens links none of it.
//
// The types of the messages (tokenbroker.Request, Reply, Error,
// RefreshedEvent, FailedEvent) live in the root package; wire holds how
// they are encoded where the root package's own encoding is not the wire's,
// or where headers and subjects are involved.
package wire
