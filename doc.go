// Package tokenbroker holds the domain of the token broker: what callers ask
// for (Request), what they get back (Reply), the events pushed to consumers
// (RefreshedEvent, FailedEvent) and the one error type (Error) whose code maps
// to the NATS micro error headers and to HTTP statuses alike.
//
// It imports neither NATS nor hollywood: the actors, messaging and HTTP
// packages speak to each other in these terms.
package tokenbroker
