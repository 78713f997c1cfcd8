// Package actors holds the credential actors and the Router that finds them.
//
// Each credential (a named credential from the configuration, or one
// username of the default profile) is a hollywood actor that owns its token,
// its refresh token and its refresh timer. It is the only writer of that
// state; it publishes a read-only snapshot of it (an atomic pointer in the
// credential's slot of the Router's table) from which the Router answers
// cache hits on the transport's own goroutine, without a hop through the
// actor, a lock or an allocation. Everything
// else — a cold credential, a token inside its refresh threshold, a password
// that does not match, a forced refresh — goes to the actor, which makes at
// most one IdP call at a time and answers every caller waiting on it from
// where the answer arrives.
//
// IdP calls run in a goroutine that reports back to the actor as a message,
// so an actor's inbox never waits on the network.
//
// With a store (Options.Store), a credential's token also lives, encrypted,
// in JetStream: an actor reads it when it starts, and writes every new token
// there before anyone is answered with it. Across brokers, the goroutine
// that would call the IdP first takes the credential's lease; a broker that
// finds it taken waits for the holder's record instead, so the cluster makes
// one IdP call per acquisition or refresh.
package actors
