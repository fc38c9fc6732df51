package testgen

import (
	"bytes"
	"strings"
	"testing"
)

func TestGenerateAuthLogDeterministic(t *testing.T) {
	var a, b, c bytes.Buffer
	if err := GenerateAuthLog(&a, 1000, 1); err != nil {
		t.Fatal(err)
	}
	if err := GenerateAuthLog(&b, 1000, 1); err != nil {
		t.Fatal(err)
	}
	if err := GenerateAuthLog(&c, 1000, 2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same seed gave different output")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("different seeds gave the same output")
	}
	lines := strings.Split(strings.TrimSuffix(a.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("got %d lines, want 1000", len(lines))
	}
	fails := 0
	for _, l := range lines {
		for _, m := range []string{"Failed password", "Invalid user", "authentication failure", "authenticating user"} {
			if strings.Contains(l, m) {
				fails++
				break
			}
		}
	}
	if fails < 100 || fails > 200 {
		t.Errorf("%d failure lines in 1000, want about 150", fails)
	}
}
