// Package actors holds the credential actors and the Router that finds them.
//
// Each credential (a named credential from the configuration, or one
// username of the default profile) is a hollywood actor that owns its token,
// its refresh token and its refresh timer. It is the only writer of that
// state; it publishes a read-only snapshot of it (an atomic pointer in the
// credential's cell) from which the Router answers cache hits on the
// transport's own goroutine, without a hop through the actor. Everything
// else — a cold credential, a token inside its refresh threshold, a password
// that does not match, a forced refresh — goes to the actor, which makes at
// most one IdP call at a time and answers every caller waiting on it from
// where the answer arrives.
//
// IdP calls run in a goroutine that reports back to the actor as a message,
// so an actor's inbox never waits on the network.
package actors
