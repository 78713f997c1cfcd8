package tokenbroker

import "log/slog"

// Secret is a string that must never be printed: a password, a client secret,
// a refresh token. Its String, GoString and LogValue methods all redact it, so
// a Secret that slips into a log line, an error or a %v shows "[redacted]".
// Use Reveal where the clear value is really needed (the IdP request body).
type Secret string

const redacted = "[redacted]"

// Reveal returns the clear value.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s == "" }

// String implements fmt.Stringer with a redacted value.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer with a redacted value, so %#v is safe too.
func (s Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer with a redacted value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText redacts the secret in any text or JSON encoding.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
