package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// memoryHost is the token endpoint host that memoryIdP answers; requests to
// any other host go over the network as usual.
const memoryHost = "idp.memory.invalid"

// memoryIdP is a token endpoint inside the broker's HTTP client: it answers
// every grant at once with a fresh token in Azure AD v1's shape (lifetimes
// as strings), without a socket, form check or signature. The scale run
// warms 100,000 credentials through it, so that the rate it reports is the
// broker's own (request, spawn, parse, install, reply), not that of a fake
// IdP's HTTP server and signing sharing the same two cores, and so that the
// memory it reports holds no IdP records.
type memoryIdP struct {
	next       http.RoundTripper // for every other host
	lifetime   time.Duration
	tokenBytes int // length of each access token
	calls      atomic.Int64
	pad        string
}

func newMemoryIdP(lifetime time.Duration, tokenBytes int) *memoryIdP {
	return &memoryIdP{next: http.DefaultTransport, lifetime: lifetime, tokenBytes: tokenBytes,
		pad: strings.Repeat("A", tokenBytes)}
}

// url is the v1 token endpoint it answers.
func (m *memoryIdP) url() string { return "http://" + memoryHost + "/common/oauth2/token" }

func (m *memoryIdP) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != memoryHost {
		return m.next.RoundTrip(req)
	}
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	n := m.calls.Add(1)
	now := time.Now()
	// A token of the configured length, unique per call: a JWT-like head,
	// the call number, and padding.
	head := "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + strconv.FormatInt(n, 36) + "."
	token := head + m.pad[:max(m.tokenBytes-len(head), 0)]
	life := int64(m.lifetime / time.Second)
	body := fmt.Sprintf(`{"token_type":"Bearer","scope":"user_impersonation","expires_in":"%d","ext_expires_in":"%d","expires_on":"%d","not_before":"%d","resource":"%s","access_token":"%s","refresh_token":"rt-%d"}`,
		life, life, now.Unix()+life, now.Unix(), benchResource, token, n)
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body:          io.NopCloser(bytes.NewReader([]byte(body))),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}
