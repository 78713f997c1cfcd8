package wire

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
)

// EncodeRefreshed returns the message of a token.refreshed event: on
// s.Refreshed(e.CredentialID), with e.EventID as its Nats-Msg-Id header so
// that a JetStream stream capturing the subjects drops a duplicate sent
// after a failover.
func EncodeRefreshed(s Subjects, e tokenbroker.RefreshedEvent) (*nats.Msg, error) {
	return eventMsg(s.Refreshed(e.CredentialID), e.EventID, e)
}

// EncodeFailed returns the message of a token.failed event, on
// s.Failed(e.CredentialID), with e.EventID as its Nats-Msg-Id header.
func EncodeFailed(s Subjects, e tokenbroker.FailedEvent) (*nats.Msg, error) {
	return eventMsg(s.Failed(e.CredentialID), e.EventID, e)
}

func eventMsg(subject, id string, event any) (*nats.Msg, error) {
	data, err := json.Marshal(event)
	if err != nil {
		// Only a time outside years 0 to 9999 gets here; the error names the
		// field, never a value of the event.
		return nil, fmt.Errorf("wire: encode event: %w", err)
	}
	msg := nats.NewMsg(subject)
	if id != "" {
		msg.Header.Set(nats.MsgIdHdr, id)
	}
	msg.Data = data
	return msg, nil
}

// DecodeRefreshed reads the body of a token.refreshed event. An event that
// is not a JSON object or has no accesstoken is an error: there is nothing
// a consumer could use in it. expires_on is left as sent, for the caller to
// parse.
func DecodeRefreshed(data []byte) (tokenbroker.RefreshedEvent, error) {
	var e tokenbroker.RefreshedEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return tokenbroker.RefreshedEvent{}, fmt.Errorf("wire: refreshed event: %w", err)
	}
	if e.AccessToken == "" {
		return tokenbroker.RefreshedEvent{}, errors.New("wire: refreshed event has no accesstoken")
	}
	return e, nil
}

// DecodeFailed reads the body of a token.failed event. An event that is
// not a JSON object or has no error is an error.
func DecodeFailed(data []byte) (tokenbroker.FailedEvent, error) {
	var e tokenbroker.FailedEvent
	if err := json.Unmarshal(data, &e); err != nil {
		return tokenbroker.FailedEvent{}, fmt.Errorf("wire: failed event: %w", err)
	}
	if e.Error == "" {
		return tokenbroker.FailedEvent{}, errors.New("wire: failed event has no error")
	}
	return e, nil
}
