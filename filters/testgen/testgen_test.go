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

func TestGenerateSSHDLog(t *testing.T) {
	var a, b, c, prefix bytes.Buffer
	for _, g := range []struct {
		buf  *bytes.Buffer
		n    int
		seed int64
	}{{&a, 20000, 1}, {&b, 20000, 1}, {&c, 20000, 2}, {&prefix, 5000, 1}} {
		if err := GenerateSSHDLog(g.buf, g.n, g.seed); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same seed gave different output")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("different seeds gave the same output")
	}
	if !bytes.HasPrefix(a.Bytes(), prefix.Bytes()) {
		t.Error("the first 5000 of 20000 lines differ from the 5000 lines of the same seed")
	}
	lines := strings.Split(strings.TrimSuffix(a.String(), "\n"), "\n")
	if len(lines) != 20000 {
		t.Fatalf("got %d lines, want 20000", len(lines))
	}
	// Every kind of connection appears: each marker is in some line.
	markers := []string{
		"Connection from ", "Failed password for root", "Failed password for invalid user",
		"Failed keyboard-interactive/pam", "error: PAM: Authentication failure",
		"maximum authentication attempts exceeded", "Disconnecting: Too many authentication failures",
		"Too many authentication failures [preauth]", "Connection closed by authenticating user",
		"Received disconnect", ":11: Bye Bye [preauth]", "Disconnected from invalid user",
		"Connection reset by", "Read from socket failed", "Postponed keyboard-interactive",
		"Invalid user", "check pass; user unknown", "authentication failure; logname=",
		"Failed none for invalid user", "Change of username or service not allowed",
		"Did not receive identification string", "kex_exchange_identification: Connection closed",
		"read: Connection reset by peer", "invalid protocol identifier", "banner exchange: Connection from",
		"Bad protocol version identification", "SSH: Server;Ltype: Version", "banner line contains invalid characters",
		"Unable to negotiate with", "no matching key exchange method found", "no matching host key type found",
		"Unable to negotiate a key exchange method", "no matching cipher found: client",
		":14: No supported authentication methods available", ":14: No authentication methods available",
		"Failed publickey for invalid user", "Failed publickey for git", "not listed in AllowUsers",
		"listed in AllowGroups", "refused connect from", "ROOT LOGIN REFUSED FROM", "Auth fail [preauth]",
		"account is locked", "User not known to the underlying authentication module", "Illegal user",
		"Authentication refused", "Accepted publickey", "Accepted password", "session opened for user",
		"Disconnected from user", "session closed for user", "CRON[", "sudo[", "systemd-logind[",
	}
	for _, m := range markers {
		found := false
		for _, l := range lines {
			if strings.Contains(l, m) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no line contains %q", m)
		}
	}
	// Connections interleave: some sshd pid has another pid's line between
	// two of its own.
	last, interleaved := map[string]int{}, false
	for i, l := range lines {
		_, rest, ok := strings.Cut(l, " gw sshd[")
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "]")
		if j, seen := last[pid]; seen && i-j > 1 && strings.Contains(lines[i-1], " gw sshd[") {
			interleaved = true
			break
		}
		last[pid] = i
	}
	if !interleaved {
		t.Error("no two sshd connections interleave")
	}
}

func TestMixedLogs(t *testing.T) {
	share, filters := 0.0, 0
	for _, l := range MixedLogs {
		share += l.Share
		filters += len(l.Filters)
		t.Run(l.Name, func(t *testing.T) {
			var a, b bytes.Buffer
			if err := l.Generate(&a, 2000, 1); err != nil {
				t.Fatal(err)
			}
			if err := l.Generate(&b, 2000, 1); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Error("same seed gave different output")
			}
			lines := strings.Split(strings.TrimSuffix(a.String(), "\n"), "\n")
			if len(lines) != 2000 {
				t.Fatalf("got %d lines, want 2000", len(lines))
			}
			// Attackers and legitimate clients both appear, each in
			// at least 5% of the lines.
			bad, good := 0, 0
			for _, line := range lines {
				if strings.Contains(line, "192.0.2.") || strings.Contains(line, "203.0.113.") || strings.Contains(line, "2001:db8:bad:") {
					bad++
				}
				if strings.Contains(line, "198.51.100.") || strings.Contains(line, "2001:db8:600d:") {
					good++
				}
			}
			if bad < 100 || good < 100 {
				t.Errorf("%d lines with an attacker's address and %d with a client's in 2000, want 100 or more each", bad, good)
			}
		})
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("shares add up to %v, want 1", share)
	}
	if filters != 10 {
		t.Errorf("%d filters read the logs, want ten", filters)
	}
}
