package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// MergeClaims builds the claims request parameter from a resource's claims
// challenge and the client's capabilities. The challenge is the JSON object
// a resource put in its WWW-Authenticate header's claims parameter (base64
// there; either form is accepted), e.g.
// {"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}; the
// capabilities (["cp1"]) are added as access_token.xms_cc.values, as MSAL
// sends them, so that Azure AD issues a token that continuous access
// evaluation can revoke. Both empty is "". A challenge that is not a JSON
// object is an error, which never quotes it.
func MergeClaims(challenge string, capabilities []string) (string, error) {
	if challenge == "" && len(capabilities) == 0 {
		return "", nil
	}
	root := map[string]any{}
	if challenge != "" {
		obj, err := claimsObject(challenge)
		if err != nil {
			return "", err
		}
		root = obj
	}
	if len(capabilities) > 0 {
		at, _ := root["access_token"].(map[string]any)
		if at == nil {
			at = map[string]any{}
			root["access_token"] = at
		}
		at["xms_cc"] = map[string]any{"values": capabilities}
	}
	b, err := json.Marshal(root)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

var errClaims = errors.New("claims must be a JSON object, or one in base64 as a WWW-Authenticate challenge carries it")

// claimsObject reads a claims challenge, as JSON or base64 of JSON.
func claimsObject(s string) (map[string]any, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				s = string(b)
				break
			}
		}
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return nil, errClaims
	}
	return obj, nil
}

// ValidClaims reports whether a caller's claims challenge can be sent.
func ValidClaims(challenge string) error {
	_, err := claimsObject(challenge)
	return err
}
