package config

import (
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Wire returns c in the shape the admin endpoints and the registry carry:
// with the contents of its secrets and no paths but AssertionFile, which
// names a file on the brokers' hosts.
func (c Credential) Wire() wire.Credential {
	secs := int64(c.RefreshThreshold / time.Second)
	return wire.Credential{
		Name: c.Name, TokenEndpoint: c.TokenEndpoint, Issuer: c.Issuer, ClientAuth: c.ClientAuth,
		ClientID: c.ClientID, Grant: c.Grant, Scope: c.Scope, Resource: c.Resource, Username: c.Username,
		ClientCapabilities: c.ClientCapabilities, RefreshThreshold: &secs, KeepWarm: c.KeepWarm, AssertionFile: c.AssertionFile,
		ClientSecret: c.ClientSecret.Reveal(), NextClientSecret: c.NextClientSecret.Reveal(),
		Password: c.Password.Reveal(), NextPassword: c.NextPassword.Reveal(),
		CertificatePEM: c.CertificatePEM, PrivateKeyPEM: c.PrivateKeyPEM.Reveal(),
	}
}

// FromWire turns a credential from the admin endpoints or the registry
// back into a Credential, with defaults' RefreshThreshold when it gives
// none, and checks it as loading the file does (CheckCredential).
func FromWire(w wire.Credential, defaults Credential) (Credential, error) {
	c := Credential{
		Name: w.Name, TokenEndpoint: w.TokenEndpoint, Issuer: w.Issuer, ClientAuth: w.ClientAuth,
		ClientID: w.ClientID, Grant: w.Grant, Scope: w.Scope, Resource: w.Resource, Username: w.Username,
		ClientCapabilities: w.ClientCapabilities,
		RefreshThreshold:   defaults.RefreshThreshold, KeepWarm: w.KeepWarm, AssertionFile: w.AssertionFile,
		ClientSecret: tokenbroker.Secret(w.ClientSecret), NextClientSecret: tokenbroker.Secret(w.NextClientSecret),
		Password: tokenbroker.Secret(w.Password), NextPassword: tokenbroker.Secret(w.NextPassword),
		CertificatePEM: w.CertificatePEM, PrivateKeyPEM: tokenbroker.Secret(w.PrivateKeyPEM),
	}
	if c.Grant == "" {
		c.Grant = GrantClientCredentials
	}
	if w.RefreshThreshold != nil {
		if *w.RefreshThreshold < 0 || *w.RefreshThreshold > maxSeconds {
			return Credential{}, invalidf(0, "%s: refresh_threshold must be a whole, non-negative number of seconds", credentialLabel(c.Name, 0))
		}
		c.RefreshThreshold = time.Duration(*w.RefreshThreshold) * time.Second
	}
	if err := CheckCredential(c); err != nil {
		return Credential{}, err
	}
	return c, nil
}
