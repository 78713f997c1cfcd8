package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeidp"
)

// TestAnIssuerWithABasicOnlyClientGetsTokens is the Ory Hydra case: the
// credential gives the issuer, discovery finds the token endpoint, and the
// client secret goes in HTTP Basic, the only way the client is registered.
func TestAnIssuerWithABasicOnlyClientGetsTokens(t *testing.T) {
	for _, methods := range [][]string{
		{fakeidp.AuthMethodPost, fakeidp.AuthMethodBasic, fakeidp.AuthMethodJWT}, // Hydra's order
		{fakeidp.AuthMethodBasic},
		nil, // the document says nothing
	} {
		t.Run(strings.Join(methods, ","), func(t *testing.T) {
			e := start(t, time.Hour, 10*time.Minute, func(c *config.Config, idp *fakeidp.Server) {
				idp.AddBasicClient("hydra-app", "hydra secret:with/odd chars")
				if methods != nil {
					idp.SetAuthMethods(methods...)
				}
				c.Credentials = append(c.Credentials, config.Credential{Name: "hydra", Grant: config.GrantClientCredentials,
					Issuer: idp.Issuer(), ClientID: "hydra-app", ClientSecret: "hydra secret:with/odd chars",
					Scope: brokertest.Resource + "/.default", RefreshThreshold: 10 * time.Minute, KeepWarm: true})
			})
			askName(t, e, "hydra")
			askNamedForced(e, "hydra")
			if got := e.idp.CallsWithAuth(fakeidp.AuthMethodBasic); got < 2 {
				t.Fatalf("Basic calls: %d, want every call after the first found it", got)
			}
			if got := e.idp.DiscoveryCalls(); got != 1 {
				t.Fatalf("discovery fetched %d times, want once", got)
			}
		})
	}
}

func TestADiscoveryDocumentOfAnotherIssuerStopsStartUp(t *testing.T) {
	idp := brokertest.StartIdP(t, time.Hour)
	cfg := brokertest.Config(idp, 10*time.Minute)
	cfg.Credentials = append(cfg.Credentials, config.Credential{Name: "hydra", Grant: config.GrantClientCredentials,
		Issuer: idp.URL() + "/elsewhere", ClientID: "x", ClientSecret: "y", KeepWarm: true})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := broker.Start(cfg, broker.Options{})
	if err == nil || !strings.Contains(err.Error(), `credential "hydra": issuer:`) || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("start with an unusable issuer: %v", err)
	}
}
