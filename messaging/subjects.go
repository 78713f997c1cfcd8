package messaging

import "github.com/tokenbroker/tokenbroker/wire"

// The subjects and the names the contract fixes moved to package wire,
// which the Go client shares without linking the server. These aliases keep
// the broker's code compiling while it moves to wire; they go once nothing
// uses them.
const (
	ServiceName   = wire.ServiceName
	QueueGroup    = wire.QueueGroup
	DefaultPrefix = wire.DefaultPrefix
)

// Subjects is wire.Subjects.
type Subjects = wire.Subjects
