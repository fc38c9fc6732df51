package control

import (
	"context"
	"testing"

	"github.com/moatproj/moat/jail"
)

// TestStatusCarriesTooOld: a jail's count of failures skipped for being
// older than findtime crosses the API.
func TestStatusCarriesTooOld(t *testing.T) {
	svc := fakeDefault()
	svc.status = func(string) ([]jail.Status, error) {
		return []jail.Status{{Jail: "sshd", TotalFailed: 2, TooOld: 7}}, nil
	}
	_, c := serve(t, NewHandler(svc, nil))
	ss, err := c.Status(context.Background(), "sshd")
	if err != nil || len(ss) != 1 || ss[0].TooOld != 7 || ss[0].TotalFailed != 2 {
		t.Fatalf("Status = %+v, %v; want sshd with 7 too old", ss, err)
	}
}
