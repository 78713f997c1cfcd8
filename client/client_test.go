package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
)

const (
	user     = brokertest.User
	password = brokertest.Password
	app      = brokertest.App
	waitFor  = 10 * time.Second
)

// env is a broker over a fake IdP, and a NATS connection to it.
type env struct {
	idp *fakeidp.Server
	nc  *nats.Conn
}

// start runs a broker with the default profile (password grant, v1) and the
// named credential app (client_credentials, v2, kept warm).
func start(t *testing.T, lifetime, threshold time.Duration) *env {
	t.Helper()
	e := brokertest.Start(t, brokertest.Options{Lifetime: lifetime, Threshold: threshold})
	nc, err := nats.Connect(e.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &env{idp: e.IdP, nc: nc}
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// requestCounter counts the messages on token.request and on a credential's
// own token.request.<name> with a plain subscriber, outside the broker's
// queue group, so it sees every request. One subscription takes both, so
// that the sentinel comes after every request before it.
type requestCounter struct {
	n        atomic.Int64
	sentinel chan struct{}
	nc       *nats.Conn
}

const sentinelHeader = "X-Test-Sentinel"

func countRequests(t *testing.T, nc *nats.Conn) *requestCounter {
	t.Helper()
	rc := &requestCounter{sentinel: make(chan struct{}, 16), nc: nc}
	sub, err := nc.Subscribe("token.>", func(m *nats.Msg) {
		if m.Subject != "token.request" && !strings.HasPrefix(m.Subject, "token.request.") {
			return // an event
		}
		if m.Header.Get(sentinelHeader) != "" {
			rc.sentinel <- struct{}{}
			return
		}
		rc.n.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return rc
}

// settled returns the number of requests sent so far on pub: it sends a
// sentinel on pub and waits for it, and NATS delivers one publisher's
// messages in order, so every request sent before has been counted.
func (rc *requestCounter) settled(t *testing.T, pub *nats.Conn) int64 {
	t.Helper()
	msg := nats.NewMsg("token.request")
	msg.Header.Set(sentinelHeader, "1")
	if err := pub.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rc.sentinel:
	case <-time.After(waitFor):
		t.Fatal("sentinel not seen")
	}
	return rc.n.Load()
}

func wantError(t *testing.T, err error, code int, oauthErr string) *tokenbroker.Error {
	t.Helper()
	var e *tokenbroker.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *tokenbroker.Error with code %d, got %T %v", code, err, err)
	}
	if e.Code != code || (oauthErr != "" && e.OAuth != oauthErr) {
		t.Fatalf("want %d %s, got %d %s (%v)", code, oauthErr, e.Code, e.OAuth, err)
	}
	return e
}

func TestTokenNamedCredential(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	rep, err := client.New(e.nc).Token(ctxFor(t), tokenbroker.Request{Credential: app})
	if err != nil {
		t.Fatal(err)
	}
	if !e.idp.Valid(rep.AccessToken) {
		t.Fatalf("token not issued by the IdP: %q", rep.AccessToken)
	}
	if rep.CredentialID != app || rep.TokenType != "Bearer" || rep.ExpiresIn <= 0 || rep.ExpiresOn == "" {
		t.Fatalf("reply: %+v", rep)
	}
}

func TestTokenPassword(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	c := client.New(e.nc)
	req := tokenbroker.Request{Username: user, Password: password}
	rep, err := c.Token(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if !e.idp.Valid(rep.AccessToken) || rep.Action != tokenbroker.ActionNew {
		t.Fatalf("reply: %+v", rep)
	}
	if rep.CredentialID == "" || strings.Contains(rep.CredentialID, "alice") {
		t.Fatalf("credential_id %q", rep.CredentialID)
	}
	again, err := c.Token(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != rep.AccessToken || again.Action != tokenbroker.ActionExisting {
		t.Fatalf("second reply: %+v", again)
	}
}

func TestTokenBrokerErrors(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	c := client.New(e.nc)
	for _, tc := range []struct {
		name  string
		req   tokenbroker.Request
		code  int
		oauth string
	}{
		{"wrong password", tokenbroker.Request{Username: user, Password: "wrong"}, tokenbroker.CodeRejected, "invalid_grant"},
		{"unknown credential", tokenbroker.Request{Credential: "nope"}, tokenbroker.CodeNotFound, "unknown_credential"},
		{"empty request", tokenbroker.Request{}, tokenbroker.CodeInvalidRequest, "invalid_request"},
		{"password without username", tokenbroker.Request{Password: "x"}, tokenbroker.CodeInvalidRequest, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := c.Token(ctxFor(t), tc.req)
			if err == nil {
				t.Fatalf("want an error, got %+v", rep)
			}
			be := wantError(t, err, tc.code, tc.oauth)
			if be.Description == "" {
				t.Fatal("no description")
			}
			if _, ok := err.(*tokenbroker.Error); !ok {
				t.Fatalf("a broker's refusal should be a bare *tokenbroker.Error, got %T", err)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestTokenNoBroker(t *testing.T) {
	nc := natstest.Connect(t, natstest.StartServer(t))
	_, err := client.New(nc).Token(ctxFor(t), tokenbroker.Request{Credential: app})
	be := wantError(t, err, tokenbroker.CodeUnavailable, "")
	if !strings.Contains(be.Description, "no broker answers on token.request") {
		t.Fatalf("description: %q", be.Description)
	}
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("want errors.Is nats.ErrNoResponders: %v", err)
	}
	var nr *client.NoReplyError
	if !errors.As(err, &nr) || nr.Broker != be {
		t.Fatalf("want a *client.NoReplyError: %T", err)
	}
	if tokenbroker.ErrorCode(err) != tokenbroker.CodeUnavailable {
		t.Fatalf("ErrorCode: %d", tokenbroker.ErrorCode(err))
	}
}

// silent returns a connection to a NATS server where something subscribes
// to token.request and token.request.* but never answers.
func silent(t *testing.T) *nats.Conn {
	t.Helper()
	s := natstest.StartServer(t)
	mute := natstest.Connect(t, s)
	for _, subject := range []string{"token.request", "token.request.*"} {
		if _, err := mute.Subscribe(subject, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := mute.Flush(); err != nil {
		t.Fatal(err)
	}
	return natstest.Connect(t, s)
}

func TestTokenDeadline(t *testing.T) {
	nc := silent(t)
	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := client.New(nc).Token(ctx, tokenbroker.Request{Credential: app})
		wantError(t, err, tokenbroker.CodeTimeout, "")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want errors.Is context.DeadlineExceeded: %v", err)
		}
	})
	t.Run("client timeout", func(t *testing.T) {
		_, err := client.New(nc, client.WithTimeout(100*time.Millisecond)).Token(context.Background(), tokenbroker.Request{Credential: app})
		wantError(t, err, tokenbroker.CodeTimeout, "")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want errors.Is context.DeadlineExceeded: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := client.New(nc).Token(ctx, tokenbroker.Request{Credential: app})
		wantError(t, err, tokenbroker.CodeTimeout, "")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want errors.Is context.Canceled: %v", err)
		}
	})
}

// TestTokenWire checks the request on the wire, the subject prefix and the
// reading of error answers with a scripted responder in place of a broker.
func TestTokenWire(t *testing.T) {
	s := natstest.StartServer(t)
	responder := natstest.Connect(t, s)
	got := make(chan string, 1)
	answers := make(chan *nats.Msg, 1)
	for _, subject := range []string{"tb.request", "tb.request.*"} {
		if _, err := responder.Subscribe(subject, func(m *nats.Msg) {
			got <- m.Subject + " " + string(m.Data)
			a := <-answers
			a.Subject = m.Reply
			_ = responder.PublishMsg(a)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	c := client.New(natstest.Connect(t, s), client.WithSubjectPrefix("tb"))
	answer := func(hdr map[string]string, body string) {
		m := nats.NewMsg("")
		for k, v := range hdr {
			m.Header.Set(k, v)
		}
		m.Data = []byte(body)
		answers <- m
	}

	answer(nil, `{"accesstoken":"tok","expires_on":"1526704330","action":"retrieved new token","token_type":"Bearer","expires_in":3599,"credential_id":"x"}`)
	rep, err := c.Token(ctxFor(t), tokenbroker.Request{Username: "u", Password: "p@ss", MinTTL: 60, ForceRefresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := `tb.request {"username":"u","password":"p@ss","force_refresh":true,"min_ttl":60}`; <-got != want {
		t.Fatalf("wire request, want %s", want)
	}
	if rep.AccessToken != "tok" || rep.ExpiresOn != "1526704330" || rep.CredentialID != "x" || rep.ExpiresIn != 3599 {
		t.Fatalf("reply %+v", rep)
	}

	// A named credential goes to its own subject, the body carrying only
	// what the subject does not say; and the description falls back to
	// the Nats-Service-Error header.
	answer(map[string]string{"Nats-Service-Error": "throttled", "Nats-Service-Error-Code": "503"}, "")
	_, err = c.Token(ctxFor(t), tokenbroker.Request{Credential: "x", MinTTL: 30})
	if want := `tb.request.x {"min_ttl":30}`; <-got != want {
		t.Fatalf("wire request, want %s", want)
	}
	if be := wantError(t, err, tokenbroker.CodeUnavailable, "temporarily_unavailable"); be.Description != "throttled" {
		t.Fatalf("description %q", be.Description)
	}

	// The body's words win over the header's.
	answer(map[string]string{"Nats-Service-Error": "short", "Nats-Service-Error-Code": "401"},
		`{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
	_, err = c.Token(ctxFor(t), tokenbroker.Request{Credential: "x"})
	<-got
	if be := wantError(t, err, tokenbroker.CodeRejected, "invalid_client"); !strings.HasPrefix(be.Description, "AADSTS7000215") {
		t.Fatalf("description %q", be.Description)
	}

	// An answer that is no reply is a 502.
	answer(nil, `<html>`)
	_, err = c.Token(ctxFor(t), tokenbroker.Request{Credential: "x"})
	<-got
	wantError(t, err, tokenbroker.CodeBadGateway, "")
}

func TestTokenSource(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	rc := countRequests(t, e.nc)
	src, err := client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Credential: app})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.CredentialID() != app {
		t.Fatalf("credential id %q", src.CredentialID())
	}

	var wg sync.WaitGroup
	toks := make([]*oauth2.Token, 20)
	errs := make([]error, len(toks))
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = src.Token()
		}()
	}
	wg.Wait()
	for i, tok := range toks {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !tok.Valid() || !e.idp.Valid(tok.AccessToken) || tok.Type() != "Bearer" || tok.AccessToken != toks[0].AccessToken {
			t.Fatalf("token %d: %+v", i, tok)
		}
		if d := time.Until(tok.Expiry); d < 50*time.Minute || d > time.Hour+time.Second {
			t.Fatalf("expiry in %s", d)
		}
		if tok.Extra("credential_id") != app {
			t.Fatalf("credential_id extra: %v", tok.Extra("credential_id"))
		}
	}
	if n := rc.settled(t, e.nc); n != 1 {
		t.Fatalf("%d requests, want the first one only", n)
	}

	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := src.Token(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Token after Close: %v", err)
	}
}

func TestTokenSourceErrors(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	_, err := client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Username: user, Password: "wrong"})
	wantError(t, err, tokenbroker.CodeRejected, "invalid_grant")
	_, err = client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Credential: "nope"})
	wantError(t, err, tokenbroker.CodeNotFound, "unknown_credential")
}

// TestTokenSourceExpiredAsksAgain: a token inside the early expiry margin
// is asked for again, for username/password sources too.
func TestTokenSourceExpiredAsksAgain(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	rc := countRequests(t, e.nc)
	src, err := client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Username: user, Password: password},
		client.WithEarlyExpiry(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for range 3 {
		tok, err := src.Token()
		if err != nil {
			t.Fatal(err)
		}
		if !e.idp.Valid(tok.AccessToken) {
			t.Fatal("invalid token")
		}
	}
	if n := rc.settled(t, e.nc); n != 4 {
		t.Fatalf("%d requests, want 4", n)
	}
}

// TestTokenSourcePushed: after the broker refreshes the credential on its
// own, the source holds the pushed token without sending a request.
func TestTokenSourcePushed(t *testing.T) {
	// Tokens live 4 s and the broker refreshes them 2 s ahead, so the
	// source's first token is still valid when the pushed one arrives.
	e := start(t, 4*time.Second, 2*time.Second)
	rc := countRequests(t, e.nc)
	events := make(chan tokenbroker.RefreshedEvent, 64)
	sub, err := e.nc.Subscribe("token.refreshed."+app, func(m *nats.Msg) {
		var ev tokenbroker.RefreshedEvent
		if err := json.Unmarshal(m.Data, &ev); err == nil {
			events <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	src, err := client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Credential: app},
		client.WithEarlyExpiry(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}

	var pushed tokenbroker.RefreshedEvent
	for pushed.AccessToken == "" || pushed.AccessToken == first.AccessToken {
		select {
		case pushed = <-events:
		case <-time.After(waitFor):
			t.Fatal("no token.refreshed event with a new token")
		}
	}
	var got *oauth2.Token
	testkit.Until(t, waitFor, "the pushed token", func() bool {
		tok, err := src.Token()
		if err != nil {
			t.Fatal(err)
		}
		got = tok
		return tok.AccessToken != first.AccessToken
	})
	if got.AccessToken != pushed.AccessToken {
		// A later refresh may have come in meanwhile; it must be pushed too.
		found := false
		for len(events) > 0 && !found {
			found = (<-events).AccessToken == got.AccessToken
		}
		if !found {
			t.Fatal("the source holds a token that was not pushed")
		}
	}
	if !got.Expiry.After(first.Expiry) {
		t.Fatalf("pushed token expires %s, not after %s", got.Expiry, first.Expiry)
	}
	if n := rc.settled(t, e.nc); n != 1 {
		t.Fatalf("%d requests, want only the first", n)
	}
}

func TestOAuth2Client(t *testing.T) {
	e := start(t, time.Hour, 10*time.Minute)
	src, err := client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Credential: app})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !e.idp.Valid(tok) {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "hello")
	}))
	defer api.Close()

	hc := oauth2.NewClient(ctxFor(t), src)
	for range 2 {
		resp, err := hc.Get(api.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "hello" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
}

// TestTokenSourcePushedPassword: a username/password source gets the
// tokens the broker refreshes for its opaque credential_id too.
func TestTokenSourcePushedPassword(t *testing.T) {
	e := start(t, 4*time.Second, 2*time.Second)
	rc := countRequests(t, e.nc)
	src, err := client.New(e.nc).TokenSource(ctxFor(t), tokenbroker.Request{Username: user, Password: password},
		client.WithEarlyExpiry(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, waitFor, "a pushed token", func() bool {
		tok, err := src.Token()
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken != first.AccessToken && e.idp.Valid(tok.AccessToken)
	})
	if n := rc.settled(t, e.nc); n != 1 {
		t.Fatalf("%d requests, want only the first", n)
	}
}
