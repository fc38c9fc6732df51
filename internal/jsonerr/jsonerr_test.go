package jsonerr

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDescribe(t *testing.T) {
	type doc struct {
		Hosts []string `json:"hosts"`
		Inner struct {
			On bool
		}
	}
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"syntax", "{\n  \"hosts\": [],\n  \"x\" 1\n}", "invalid JSON at line 3, column 7: invalid character '1' after object key"},
		{"truncated", "{\"hosts\": [", "invalid JSON at line 1, column 11: unexpected end of JSON input"},
		{"type", "{\n\"hosts\": \"tcp://x:1\"}", `line 2: "hosts" must be a list of strings, not string`},
		{"nested type", `{"Inner": {"On": 1}}`, `line 1: "Inner.On" must be true or false, not number`},
		{"document", `[1]`, "line 1: the document must be an object, not array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := json.Unmarshal([]byte(tt.in), &d)
			if err == nil {
				t.Fatal("no decoding error")
			}
			if got := Describe([]byte(tt.in), err).Error(); got != tt.want {
				t.Errorf("Describe = %q, want %q", got, tt.want)
			}
		})
	}
	other := errors.New("boom")
	if got := Describe(nil, other); !errors.Is(got, other) || got.Error() != "invalid JSON: boom" {
		t.Errorf("Describe(other) = %v", got)
	}
}
