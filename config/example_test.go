package config_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tokenbroker/tokenbroker/config"
)

func ExampleLoad() {
	environ := map[string]string{
		"TOKEN_ENDPOINT": "https://login.microsoftonline.com/contoso/oauth2/token",
		"CLIENTID":       "00000000-0000-0000-0000-000000000000",
		"RESOURCE":       "https://contoso.crm.dynamics.com",
		"REFRESH_TIME":   "300", // the seed's alias of REFRESH_THRESHOLD
		"HTTP_ADDR":      "",    // set but empty: no HTTP gateway
	}
	lookup := func(k string) (string, bool) { v, ok := environ[k]; return v, ok }

	cfg, args, err := config.Load("tokenbroker", []string{"--log-level", "debug", "serve"}, lookup, io.Discard)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Default.Name, cfg.Default.Grant, cfg.Default.RefreshThreshold)
	fmt.Printf("http=%q nats=%s log=%s args=%q\n", cfg.HTTPAddr, cfg.NATSListen, cfg.LogLevel, args)

	environ["REFRESH_THRESHOLD"] = "ten minutes"
	_, _, err = config.Load("tokenbroker", nil, lookup, io.Discard)
	fmt.Println(err)
	fmt.Println(errors.Is(err, config.ErrInvalid))
	// Output:
	// default password 5m0s
	// http="" nats=127.0.0.1:4222 log=debug args=["serve"]
	// config: REFRESH_THRESHOLD (--refresh-threshold): "ten minutes" is not a whole number of seconds
	// true
}

func ExampleLoadCredentials() {
	const file = `
credentials:
  - name: crm-prod
    token_endpoint: https://login.microsoftonline.com/TENANT/oauth2/v2.0/token
    client_id: 00000000-0000-0000-0000-000000000000
    client_secret: not-in-production
    scop: https://contoso.crm.dynamics.com/.default
`
	_, err := config.LoadCredentials(strings.NewReader(file), config.Credential{})
	fmt.Println(err)
	// Output:
	// config: credential "crm-prod": unknown key "scop" (line 7)
}
