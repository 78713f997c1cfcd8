package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error that reports a missing or invalid
// setting, so a caller can tell a configuration mistake from anything else
// with errors.Is(err, config.ErrInvalid).
var ErrInvalid = errors.New("config: invalid setting")

// invalidError is the one error type of the package: a one-line message, with
// the credentials file and line when it comes from there.
type invalidError struct {
	file string // the credentials file, when known
	line int    // line in the credentials file; 0 when unknown
	msg  string
}

func (e *invalidError) Error() string {
	switch {
	case e.file != "" && e.line > 0:
		return fmt.Sprintf("config: %s:%d: %s", e.file, e.line, e.msg)
	case e.file != "":
		return fmt.Sprintf("config: %s: %s", e.file, e.msg)
	case e.line > 0:
		return fmt.Sprintf("config: %s (line %d)", e.msg, e.line)
	}
	return "config: " + e.msg
}

func (e *invalidError) Unwrap() error { return ErrInvalid }

var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// invalidf returns an invalidError; the message is forced onto one line.
func invalidf(line int, format string, args ...any) *invalidError {
	msg := fmt.Sprintf(format, args...)
	msg = oneLine.Replace(msg)
	return &invalidError{line: line, msg: msg}
}
