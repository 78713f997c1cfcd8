package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Errors answered later by a credential's actor (a password the IdP
// refused) count as well as those refused at once (an unknown credential,
// a malformed request): status shows every refused request.
func TestStatusCountsEveryRefusedRequest(t *testing.T) {
	url, _ := runDemo(t)
	refused := 0
	for range 6 {
		code, _, errs := runCmd(t, nil, "token", "--nats-url", url, "--username", demoUser, "--password", "wrong")
		if code != exitError || !strings.Contains(errs, "401") && !strings.Contains(errs, "429") {
			t.Fatalf("wrong password: exit %d, %s", code, errs)
		}
		refused++
	}
	if code, _, errs := runCmd(t, nil, "token", "--nats-url", url, "--credential", "no-such-credential"); code != exitError || !strings.Contains(errs, "404") {
		t.Fatalf("unknown credential: exit %d, %s", code, errs)
	}
	refused++
	if code, _, errs := runCmd(t, nil, "token", "--nats-url", url, "--credential", demoApp); code != exitOK {
		t.Fatalf("token: %s", errs)
	}
	code, out, errs := runCmd(t, nil, "status", "--nats-url", url, "--wait", "500ms")
	if code != exitOK {
		t.Fatalf("status exited %d: %s", code, errs)
	}
	line := regexp.MustCompile(`(?m)^\S+\s+0\.1\.0\s+\S+\s+(\d+)\s+(\d+)\s`).FindStringSubmatch(out)
	if line == nil {
		t.Fatalf("no broker line in:\n%s", out)
	}
	if line[1] != strconv.Itoa(refused+1) || line[2] != strconv.Itoa(refused) {
		t.Fatalf("REQUESTS %s, ERRORS %s; want %d and %d in:\n%s", line[1], line[2], refused+1, refused, out)
	}
}
