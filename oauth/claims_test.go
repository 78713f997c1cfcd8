package oauth_test

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/oauth"
)

func TestMergeClaims(t *testing.T) {
	challenge := `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`
	for _, tc := range []struct {
		name, challenge string
		caps            []string
		want            string
	}{
		{"nothing", "", nil, ""},
		{"capabilities alone", "", []string{"cp1"}, `{"access_token":{"xms_cc":{"values":["cp1"]}}}`},
		{"challenge alone", challenge, nil, `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`},
		{"base64 challenge", base64.StdEncoding.EncodeToString([]byte(challenge)), nil, `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`},
		{"both", challenge, []string{"cp1"}, `{"access_token":{"nbf":{"essential":true,"value":"1700000000"},"xms_cc":{"values":["cp1"]}}}`},
		{"id_token kept", `{"id_token":{"acrs":{"value":"c1"}}}`, []string{"cp1"}, `{"access_token":{"xms_cc":{"values":["cp1"]}},"id_token":{"acrs":{"value":"c1"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := oauth.MergeClaims(tc.challenge, tc.caps)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if got != "" {
					t.Fatalf("got %s, want nothing", got)
				}
				return
			}
			var g, w any
			_ = json.Unmarshal([]byte(got), &g)
			_ = json.Unmarshal([]byte(tc.want), &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestBadClaimsAreRefusedWithoutBeingQuoted(t *testing.T) {
	for _, bad := range []string{"not json", "[1,2]", "null", "W10=", `{"access_token":`, "secret-looking-value"} {
		err := oauth.ValidClaims(bad)
		if err == nil {
			t.Fatalf("%q accepted", bad)
		}
		if strings.Contains(err.Error(), bad) {
			t.Fatalf("error quotes the input: %v", err)
		}
		if _, err := oauth.MergeClaims(bad, []string{"cp1"}); err == nil {
			t.Fatalf("MergeClaims(%q) accepted", bad)
		}
	}
}
