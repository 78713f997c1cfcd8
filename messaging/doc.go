// Package messaging is the broker's NATS side: the subjects, the embedded
// server, the connection to an external one, the token.request micro
// service and the publisher of token.refreshed and token.failed events.
package messaging
