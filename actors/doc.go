// Package actors holds the credential actors and the Router that finds them.
//
// A request flows through three parts:
//
//   - The Router resolves it once to its credential (a named credential, or
//     one username of the default profile, keyed by a keyed hash) and looks
//     in its directory (cellTable) for the snapshot the credential's actor
//     published. When policy.Policy says the snapshot's token serves the
//     request, the Router answers on the transport's own goroutine: no hop
//     through the actor, no lock, no allocation.
//   - Otherwise the resolved request goes, as a getToken message, to the
//     credential's actor (spawned on first use). Each credential is a
//     hollywood actor, the only writer of its token, refresh token and
//     timers. It asks the same policy, answers at once when it can, and
//     else queues the caller behind the one job in flight, starting one if
//     there is none, so that any number of callers share one IdP call.
//     Every caller is answered by its deadline (REQUEST_TIMEOUT), with a 504
//     at worst: this is the one place a 504 is decided.
//   - A job gets the token in a goroutine of its own, with everything it
//     needs copied in, and reports back to the actor as a message, so an
//     actor never waits on the network. The actor installs the token
//     (publishing a new snapshot), answers the waiters, pushes a refreshed
//     event and sets its timer for the next proactive refresh.
//
// An actor sees the Router only through the host interface (publish a
// snapshot, retire, redispatch a request) and the deps it shares with every
// other actor, so it can be read, and tested, alone.
//
// With a store (Options.Store), a credential's token also lives, encrypted,
// in JetStream: an actor reads it when it starts, and a job writes every new
// token there before anyone is answered with it. Across brokers, a job first
// takes the credential's lease; a broker that finds it taken waits for the
// holder's record instead, so the cluster makes one IdP call per acquisition
// or refresh.
package actors
