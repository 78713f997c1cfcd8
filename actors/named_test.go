package actors

import (
	"context"
	"testing"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/testkit"
	"github.com/tokenbroker/tokenbroker/oauth"
)

// appSpec is a named client credentials credential at the harness's IdP.
func (h *harness) appSpec(name, clientID string, secrets *Secrets) Spec {
	return Spec{
		Name: name, Grant: GrantClientCredentials, RefreshThreshold: h.router.opts.Named[0].RefreshThreshold, KeepWarm: true,
		Endpoint: oauth.Endpoint{TokenURL: h.idp.V2TokenURL(), ClientID: clientID, Scope: testResource + "/.default"},
		Secrets:  secrets,
	}
}

func TestPutServesANewCredentialAndRemoveStopsIt(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.idp.AddClient("hr-client", "hr-secret")
	if res := h.ask(named("hr")); res.err == nil || res.err.Code != tokenbroker.CodeNotFound {
		t.Fatalf("before put: %+v, want 404", res)
	}
	if err := h.router.Put(h.appSpec("hr", "hr-client", NewSecrets("hr-secret", "", "", ""))); err != nil {
		t.Fatal(err)
	}
	h.mustToken(named("hr"), tokenbroker.ActionNew)
	h.mustToken(named("hr"), tokenbroker.ActionExisting)
	if got := h.router.Status().Named; len(got) != 2 || got[1].CredentialID != "hr" || !got[1].Warm {
		t.Fatalf("status: %+v", got)
	}

	if !h.router.Remove(context.Background(), "hr", true) {
		t.Fatal("Remove found no credential")
	}
	if res := h.ask(named("hr")); res.err == nil || res.err.Code != tokenbroker.CodeNotFound {
		t.Fatalf("after remove: %+v, want 404", res)
	}
	ev := h.events.nextFailed(t)
	if ev.CredentialID != "hr" || ev.Error != tokenbroker.OAuthUnknownCredential {
		t.Fatalf("failed event: %+v", ev)
	}
	testkit.Until(t, waitFor, "the removed credential's actor leaves memory", func() bool {
		_, ok := h.router.cells.load(namedKey(1))
		return !ok
	})
	if h.router.Remove(context.Background(), "hr", true) {
		t.Fatal("a second Remove found the credential again")
	}
	// The others are untouched.
	h.mustToken(named(testApp), tokenbroker.ActionNew)
}

func TestPutKeepsTheTokenWhenOnlySecretsOrThresholdChange(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.mustToken(named(testApp), tokenbroker.ActionNew)
	s := h.appSpec(testApp, testApp, NewSecrets(testSecret, "", "", ""))
	s.RefreshThreshold = 0
	if err := h.router.Put(s); err != nil {
		t.Fatal(err)
	}
	got := h.mustToken(named(testApp), tokenbroker.ActionExisting)
	if got.AccessToken != first.AccessToken {
		t.Fatal("a changed threshold dropped the token")
	}
	wantCalls(t, h.idp, "client_credentials", 1)
}

func TestPutDropsTheTokenWhenTheCredentialAsksSomethingElse(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.idp.AddClient("other-client", "other-secret")
	first := h.mustToken(named(testApp), tokenbroker.ActionNew)
	if err := h.router.Put(h.appSpec(testApp, "other-client", NewSecrets("other-secret", "", "", ""))); err != nil {
		t.Fatal(err)
	}
	// The change reaches the actor as a message: the next answer comes
	// from a new IdP call for the new client.
	testkit.Until(t, waitFor, "the old token withdrawn", func() bool {
		c, ok := h.router.cells.load(h.router.lookup(testApp).key)
		return ok && c.snap.Load() == nil
	})
	got := h.mustToken(named(testApp), tokenbroker.ActionNew)
	if got.AccessToken == first.AccessToken {
		t.Fatal("the old client's token is still served")
	}
	if aud := h.idp.Claims(got.AccessToken)["appid"]; aud != nil && aud != "other-client" {
		t.Fatalf("token for client %v, want other-client", aud)
	}
}

func TestASecretFileWithTwoSecretsFallsBackOnceAndThenPrefersTheOther(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.idp.AddClient("rot", "new-secret") // the IdP already moved to the new one
	secrets := NewSecrets("old-secret", "new-secret", "", "")
	if err := h.router.Put(h.appSpec("rot", "rot", secrets)); err != nil {
		t.Fatal(err)
	}
	h.mustToken(named("rot"), tokenbroker.ActionNew)
	wantCalls(t, h.idp, "client_credentials", 2) // refused, then accepted
	if l := *secrets.clients(); l[0] != "new-secret" {
		t.Fatal("the secret that worked is not preferred")
	}
	h.mustToken(tokenbroker.Request{Credential: "rot", ForceRefresh: true}, tokenbroker.ActionRefreshed)
	wantCalls(t, h.idp, "client_credentials", 3) // straight to the one that works

	// A re-read of the same file keeps the order learnt.
	secrets.Set("old-secret", "new-secret", "", "")
	if l := *secrets.clients(); l[0] != "new-secret" {
		t.Fatal("re-reading an unchanged file undid the preference")
	}
	// Both refused: the caller gets the IdP's refusal, after one try each.
	h.idp.AddClient("rot", "newest")
	res := h.ask(tokenbroker.Request{Credential: "rot", ForceRefresh: true})
	if res.err == nil || res.err.Code != tokenbroker.CodeRejected || res.err.OAuth != tokenbroker.OAuthInvalidClient {
		t.Fatalf("both secrets refused: %+v", res)
	}
	wantCalls(t, h.idp, "client_credentials", 5)
}

func TestARotatedSecretIsUsedFromTheNextCall(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	secrets := NewSecrets(testSecret, "", "", "")
	if err := h.router.Put(h.appSpec(testApp, testApp, secrets)); err != nil {
		t.Fatal(err)
	}
	h.mustToken(named(testApp), tokenbroker.ActionNew)
	h.idp.AddClient(testApp, "rotated")
	secrets.Set("rotated", "", "", "")
	h.mustToken(tokenbroker.Request{Credential: testApp, ForceRefresh: true}, tokenbroker.ActionRefreshed)
}

func TestRemoveAnswersTheCallersWaitingOnTheIdP(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	release := h.idp.Hold()
	defer release()
	rep := newReplier()
	h.router.Serve(named(testApp), rep)
	testkit.Until(t, waitFor, "the IdP call under way", func() bool { return h.idp.Calls() >= 1 })
	h.router.Remove(context.Background(), testApp, false)
	if res := rep.wait(t); res.err == nil || res.err.Code != tokenbroker.CodeNotFound {
		t.Fatalf("waiter of a removed credential: %+v, want 404", res)
	}
	select {
	case ev := <-h.events.failed:
		t.Fatalf("a removal that is not final published %+v", ev)
	default:
	}
}
