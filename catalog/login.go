package catalog

import (
	"context"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/actors"
	"github.com/tokenbroker/tokenbroker/oauth"
	"github.com/tokenbroker/tokenbroker/wire"
)

// Loginer is the part of a Router that runs device code enrolments:
// *actors.Router.
type Loginer interface {
	Login(ctx context.Context, name string) (*oauth.DeviceAuthorization, *tokenbroker.Error)
	LoginWait(ctx context.Context, name string) (actors.LoginStatus, *tokenbroker.Error)
}

var _ Loginer = (*actors.Router)(nil)

// BrokerID names this broker in the admin subjects that only it answers.
func (c *Catalog) BrokerID() string {
	if c.o.ID != "" {
		return c.o.ID
	}
	return c.o.Broker
}

func (c *Catalog) loginer() (Loginer, *tokenbroker.Error) {
	if l, ok := c.router.(Loginer); ok {
		return l, nil
	}
	return nil, tokenbroker.Errorf(tokenbroker.CodeInternal, tokenbroker.OAuthServerError, "this broker cannot run logins")
}

// Login starts a device code enrolment of the credential name on this
// broker and says what the person signing in must do, and where to wait.
func (c *Catalog) Login(ctx context.Context, name, caller string) (wire.AdminLoginReply, *tokenbroker.Error) {
	l, e := c.loginer()
	if e != nil {
		return wire.AdminLoginReply{}, e
	}
	da, e := l.Login(ctx, name)
	if e != nil {
		return wire.AdminLoginReply{}, e
	}
	c.log.Info("device login started", "credential_id", name, "by", caller)
	return wire.AdminLoginReply{
		Name: name, VerificationURI: da.VerificationURI, VerificationURIComplete: da.VerificationURIComplete,
		UserCode: da.UserCode, Message: da.Message, ExpiresIn: int64(da.ExpiresIn.Seconds()),
		Broker: c.BrokerID(),
	}, nil
}

// LoginWait waits, until ctx ends, for this broker's login of name.
func (c *Catalog) LoginWait(ctx context.Context, name string) (wire.AdminLoginStatus, *tokenbroker.Error) {
	l, e := c.loginer()
	if e != nil {
		return wire.AdminLoginStatus{}, e
	}
	st, e := l.LoginWait(ctx, name)
	if e != nil {
		return wire.AdminLoginStatus{}, e
	}
	out := wire.AdminLoginStatus{Name: name, State: st.State}
	if st.Err != nil {
		out.Error, out.Description = st.Err.OAuth, st.Err.Description
	}
	return out, nil
}
