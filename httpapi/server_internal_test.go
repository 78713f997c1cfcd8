package httpapi

import (
	"net/http"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

type nopService struct{}

func (nopService) Serve(tokenbroker.Request, tokenbroker.Replier) {}

func TestServerLimits(t *testing.T) {
	for _, tc := range []struct {
		name           string
		h              http.Handler
		serviceTimeout time.Duration
		wantWrite      time.Duration
	}{
		{"the Service's timeout", NewHandler(Options{Service: nopService{}}), 2 * time.Second, 7 * time.Second},
		{"the default", NewHandler(Options{Service: nopService{}}), 0, 35 * time.Second},
		{"a foreign handler", http.NotFoundHandler(), 45 * time.Second, 50 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer("127.0.0.1:0", tc.h, tc.serviceTimeout).srv
			if s.ReadHeaderTimeout != 5*time.Second || s.ReadTimeout != 10*time.Second ||
				s.IdleTimeout != 120*time.Second || s.MaxHeaderBytes != 64<<10 {
				t.Errorf("limits: header %v, read %v, idle %v, max header %d",
					s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout, s.MaxHeaderBytes)
			}
			if s.WriteTimeout != tc.wantWrite {
				t.Errorf("WriteTimeout = %v, want %v", s.WriteTimeout, tc.wantWrite)
			}
		})
	}
}
