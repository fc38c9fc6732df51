package docker

import (
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkDecodeEncodingJSON is the reference for BenchmarkDecode: the same
// line read with encoding/json.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	line := []byte(`{"log":"Nov 27 03:04:05 web sshd[812]: Failed password for invalid user admin from 192.0.2.7 port 52144 ssh2\n","stream":"stdout","time":"2026-11-27T03:04:05.123456789Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		var e struct {
			Log    string
			Stream string
			Time   time.Time
		}
		if err := json.Unmarshal(line, &e); err != nil {
			b.Fatal(err)
		}
	}
}
