// Package messaging is the broker's NATS side: the embedded server, the
// connection to an external one, the token.request micro service and the
// publisher of token.refreshed and token.failed events. The subjects and the
// bytes on them are package wire's, which the Go client shares.
package messaging
