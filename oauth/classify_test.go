package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// heldBack is a client's own fail-fast error that unwraps to FailFastError,
// as guard's CircuitOpenError does.
type heldBack struct{ ff FailFastError }

func (h *heldBack) Error() string { return "held back" }
func (h *heldBack) Unwrap() error { return &h.ff }

// TestClassify covers every case of Classify. The OAuth codes are written
// out: they are the wire values callers see.
func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name string
		err  error
		want *tokenbroker.Error
	}{
		{"nil", nil, nil},
		{"fail fast, wait rounded up", &FailFastError{TokenURL: "https://idp/t", RetryAfter: 1500 * time.Millisecond},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider is failing; not asking it again yet", RetryAfter: 2}},
		{"fail fast, wait unknown", &FailFastError{TokenURL: "https://idp/t"},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider is failing; not asking it again yet"}},
		{"fail fast, unwrapped from a client's own error", fmt.Errorf("ctx: %w", &heldBack{FailFastError{RetryAfter: 30 * time.Second}}),
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider is failing; not asking it again yet", RetryAfter: 30}},
		{"error body in a 200", &RetrieveError{StatusCode: 200, ErrorCode: "invalid_request", Description: "bad"},
			&tokenbroker.Error{Code: 502, OAuth: "server_error", Description: "the identity provider answered 200 with an error body: invalid_request: bad"}},
		{"rejection passed through", &RetrieveError{StatusCode: 400, ErrorCode: "invalid_grant", Description: "AADSTS50126: bad password", RetryAfter: 3 * time.Second},
			&tokenbroker.Error{Code: 401, OAuth: "invalid_grant", Description: "AADSTS50126: bad password", RetryAfter: 3}},
		{"rejection without a code", &RetrieveError{StatusCode: 404},
			&tokenbroker.Error{Code: 401, OAuth: "invalid_request"}},
		{"wrapped rejection", fmt.Errorf("refresh: %w", &RetrieveError{StatusCode: 401, ErrorCode: "invalid_client", Description: "AADSTS7000215"}),
			&tokenbroker.Error{Code: 401, OAuth: "invalid_client", Description: "AADSTS7000215"}},
		{"throttled, wait truncated", &RetrieveError{StatusCode: 429, ErrorCode: "temporarily_unavailable", Description: "AADSTS90033", RetryAfter: 7900 * time.Millisecond},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "AADSTS90033", RetryAfter: 7}},
		{"temporary by code in a 400", &RetrieveError{StatusCode: 400, ErrorCode: "temporarily_unavailable"},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider is unavailable or throttling"}},
		{"outage without code or description", &RetrieveError{StatusCode: 503},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider is unavailable or throttling"}},
		{"server error keeps its code", &RetrieveError{StatusCode: 500, ErrorCode: "server_error"},
			&tokenbroker.Error{Code: 503, OAuth: "server_error", Description: "the identity provider is unavailable or throttling"}},
		{"unusable answer", &ResponseError{StatusCode: 200, Reason: "no access_token"},
			&tokenbroker.Error{Code: 502, OAuth: "server_error", Description: "the identity provider answered with something unusable: no access_token"}},
		{"timeout", &TransportError{URL: "https://idp/t", Err: context.DeadlineExceeded},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider did not answer in time"}},
		{"unreachable", &TransportError{URL: "https://idp/t", Err: refused},
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider is unreachable"}},
		{"anything else", errors.New("waiting for a free slot: context canceled"),
			&tokenbroker.Error{Code: 503, OAuth: "temporarily_unavailable", Description: "the identity provider could not be asked"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Classify(%v)\n got %#v\nwant %#v", tc.err, got, tc.want)
			}
		})
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, "ok"},
		{&RetrieveError{StatusCode: 400, ErrorCode: "invalid_grant"}, "rejected"},
		{&RetrieveError{StatusCode: 200, ErrorCode: "invalid_request"}, "rejected"},
		{fmt.Errorf("wrapped: %w", &RetrieveError{StatusCode: 401}), "rejected"},
		{&RetrieveError{StatusCode: 429}, "unavailable"},
		{&RetrieveError{StatusCode: 400, ErrorCode: "server_error"}, "unavailable"},
		{&ResponseError{StatusCode: 200, Reason: "empty body"}, "unusable"},
		{&TransportError{Err: context.DeadlineExceeded}, "unavailable"},
		{&FailFastError{}, "unavailable"},
		{errors.New("unforeseen"), "unavailable"},
	}
	for _, tc := range tests {
		if got := OutcomeOf(tc.err); got != tc.want {
			t.Errorf("OutcomeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestFailFastError(t *testing.T) {
	e := &FailFastError{TokenURL: "https://idp.example/t/oauth2/token", RetryAfter: 2 * time.Second}
	if got, want := e.Error(), "oauth: token endpoint https://idp.example/t/oauth2/token: not called while it is failing, retry after 2s"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := (&FailFastError{TokenURL: "https://idp.example/t"}).Error(), "oauth: token endpoint https://idp.example/t: not called while it is failing"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !e.Temporary() {
		t.Error("Temporary() = false")
	}
	for d, want := range map[time.Duration]int{0: 0, time.Nanosecond: 1, time.Second: 1, time.Second + 1: 2, time.Minute: 60} {
		if got := (&FailFastError{RetryAfter: d}).RetryAfterSeconds(); got != want {
			t.Errorf("RetryAfterSeconds() of %v = %d, want %d", d, got, want)
		}
	}
}
