package tokenbroker

import (
	"strings"
	"unicode/utf8"
)

// decodeFast parses the request shapes callers actually send — one flat
// object of plain strings, booleans and whole numbers — without reflection,
// since encoding/json was most of the cost of a cache hit. It gives up
// (ok false) on anything else: escapes, null, nesting, fractions, exponents,
// a type that does not fit the field, a key that differs from a field's
// name only by case. DecodeRequest then lets encoding/json decide, so both
// paths accept exactly the same documents with the same result, which
// FuzzDecodeFastMatchesJSON checks.
func decodeFast(data []byte) (r Request, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return r, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return r, skipSpace(data, i+1) == len(data)
	}
	for {
		key, next, ok := plainString(data, i)
		if !ok {
			return r, false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return r, false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return r, false
		}
		switch key {
		case "username", "password", "credential", "claims":
			s, next, ok := plainString(data, i)
			if !ok {
				return r, false
			}
			switch key {
			case "username":
				r.Username = s
			case "password":
				r.Password = Secret(s)
			case "claims":
				r.Claims = s
			default:
				r.Credential = s
			}
			i = next
		case "force_refresh":
			switch {
			case hasPrefixAt(data, i, "true"):
				r.ForceRefresh, i = true, i+4
			case hasPrefixAt(data, i, "false"):
				r.ForceRefresh, i = false, i+5
			default:
				return r, false
			}
		case "min_ttl":
			n, next, ok := wholeNumber(data, i)
			if !ok {
				return r, false
			}
			r.MinTTL, i = n, next
		default:
			if isFieldFold(key) {
				return r, false // encoding/json matches field names without case
			}
			next, ok := skipScalar(data, i)
			if !ok {
				return r, false
			}
			i = next
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return r, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return r, skipSpace(data, i+1) == len(data)
		default:
			return r, false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

func hasPrefixAt(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// plainString reads a JSON string without escapes or control characters,
// starting at its opening quote.
func plainString(data []byte, i int) (string, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			if !utf8.Valid(s) {
				return "", i, false
			}
			return string(s), j + 1, true
		case c == '\\' || c < 0x20:
			return "", i, false
		}
	}
	return "", i, false
}

// wholeNumber reads a JSON integer that fits an int64, without fraction or
// exponent.
func wholeNumber(data []byte, i int) (int64, int, bool) {
	neg := false
	if i < len(data) && data[i] == '-' {
		neg, i = true, i+1
	}
	start := i
	var n int64
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		if i-start >= 18 {
			return 0, i, false // let encoding/json judge the range
		}
		n = n*10 + int64(data[i]-'0')
		i++
	}
	if i == start || (data[start] == '0' && i-start > 1) {
		return 0, i, false
	}
	if i < len(data) && (data[i] == '.' || data[i] == 'e' || data[i] == 'E') {
		return 0, i, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}

// skipScalar skips the value of a field the request does not have, when it
// is a plain string, a boolean or a whole number.
func skipScalar(data []byte, i int) (int, bool) {
	switch {
	case data[i] == '"':
		_, next, ok := plainString(data, i)
		return next, ok
	case hasPrefixAt(data, i, "true"):
		return i + 4, true
	case hasPrefixAt(data, i, "false"):
		return i + 5, true
	default:
		_, next, ok := wholeNumber(data, i)
		return next, ok
	}
}

var requestFields = []string{"username", "password", "credential", "force_refresh", "min_ttl", "claims"}

func isFieldFold(key string) bool {
	for _, f := range requestFields {
		if strings.EqualFold(key, f) {
			return true
		}
	}
	return false
}
