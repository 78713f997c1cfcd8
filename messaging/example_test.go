package messaging_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// A caller asks for a named credential's token with a plain NATS request,
// and reads the micro error headers on failure.
func Example_request() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		fmt.Println("no NATS here:", err != nil)
		return
	}
	defer nc.Close()
	msg, err := nc.Request("token.request", []byte(`{"credential":"crm-prod"}`), 10*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		fmt.Println("refused:", code, msg.Header.Get("Nats-Service-Error"))
		return
	}
	var reply struct {
		AccessToken string `json:"accesstoken"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	_ = json.Unmarshal(msg.Data, &reply)
	fmt.Println("token valid for", reply.ExpiresIn, "s")
}
