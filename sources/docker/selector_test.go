package docker

import (
	"strings"
	"testing"
)

var selectorTests = []struct {
	name    string
	in      string
	wantErr string // substring; "" for no error
	str     string // String(); "" means in
	match   []string
	noMatch []string
}{
	{name: "name", in: "web", match: []string{"web"}, noMatch: []string{"web2", "shop-web-1", "db", "label"}},
	{name: "name with slash", in: "/web", str: "web", match: []string{"web"}, noMatch: []string{"db"}},
	{name: "explicit name", in: "name:web", str: "web", match: []string{"web"}, noMatch: []string{"db"}},
	{name: "compose name", in: "shop-web-1", match: []string{"shop-web-1"}, noMatch: []string{"shop-web-2"}},
	{name: "glob", in: "shop-web-*", match: []string{"shop-web-1", "shop-web-12"}, noMatch: []string{"shop-db-1", "web"}},
	{name: "label value", in: "label:com.example.role=frontend", match: []string{"web"}, noMatch: []string{"db", "api", "bare"}},
	{name: "label value with =", in: "label:com.example.expr=a=b", match: []string{"api"}, noMatch: []string{"web"}},
	{name: "label empty value", in: "label:com.example.empty=", match: []string{"db"}, noMatch: []string{"web"}},
	{name: "label present", in: "label:com.example.role", match: []string{"web", "api"}, noMatch: []string{"db", "bare"}},
	{name: "id prefix", in: "id:" + fakeID("web")[:5], match: []string{"web"}, noMatch: []string{"db"}},
	{name: "whole id", in: "id:" + fakeID("db"), match: []string{"db"}, noMatch: []string{"web"}},

	{name: "empty", in: "", wantErr: "empty container selector"},
	{name: "empty label", in: "label:", wantErr: "empty label key"},
	{name: "empty label key", in: "label:=x", wantErr: "empty label key"},
	{name: "label key with space", in: "label:a b=c", wantErr: "space"},
	{name: "empty id", in: "id:", wantErr: "hex"},
	{name: "id not hex", in: "id:xyz", wantErr: "hex"},
	{name: "id upper case", in: "id:ABC", wantErr: "hex"},
	{name: "id too long", in: "id:" + strings.Repeat("a", 65), wantErr: "hex"},
	{name: "empty name", in: "name:", wantErr: "empty name"},
	{name: "only slash", in: "/", wantErr: "empty name"},
	{name: "bad name char", in: "web server", wantErr: `name has " "`},
	{name: "colon", in: "labels:x", wantErr: `":"`},
	{name: "bad glob", in: "web[", wantErr: "bad glob"},
	{name: "too long", in: strings.Repeat("a", 2000), wantErr: "longer"},
}

// selectorContainers are what selectorTests match against.
func selectorContainers() map[string]Container {
	mk := func(name string, labels map[string]string) Container {
		return Container{ID: fakeID(name), Name: name, Labels: labels, LogDriver: DriverJSONFile}
	}
	cs := map[string]Container{
		"web":         mk("web", map[string]string{"com.example.role": "frontend"}),
		"api":         mk("api", map[string]string{"com.example.role": "backend", "com.example.expr": "a=b"}),
		"db":          mk("db", map[string]string{"com.example.empty": ""}),
		"bare":        mk("bare", nil),
		"web2":        mk("web2", nil),
		"label":       mk("label", nil),
		"shop-web-1":  mk("shop-web-1", nil),
		"shop-web-2":  mk("shop-web-2", nil),
		"shop-web-12": mk("shop-web-12", nil),
		"shop-db-1":   mk("shop-db-1", nil),
	}
	return cs
}

func TestParseSelector(t *testing.T) {
	cs := selectorContainers()
	for _, tt := range selectorTests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSelector(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSelector(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSelector(%q): %v", tt.in, err)
			}
			want := tt.str
			if want == "" {
				want = tt.in
			}
			if got := s.String(); got != want {
				t.Errorf("ParseSelector(%q).String() = %q, want %q", tt.in, got, want)
			}
			for _, n := range tt.match {
				if !s.Match(cs[n]) {
					t.Errorf("%q does not match container %s", tt.in, n)
				}
			}
			for _, n := range tt.noMatch {
				if s.Match(cs[n]) {
					t.Errorf("%q matches container %s", tt.in, n)
				}
			}
		})
	}
}

func TestZeroSelectorMatchesNothing(t *testing.T) {
	for n, c := range selectorContainers() {
		if (Selector{}).Match(c) {
			t.Errorf("zero Selector matches %s", n)
		}
	}
	if MatchAny(nil, selectorContainers()["web"]) {
		t.Error("MatchAny(nil) = true")
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, tt := range selectorTests {
		f.Add(tt.in)
	}
	cs := selectorContainers()
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSelector(in)
		if err != nil {
			if s != (Selector{}) {
				t.Fatalf("ParseSelector(%q) = %+v with error %v, want the zero Selector", in, s, err)
			}
			return
		}
		// What String gives back parses to the same selector.
		s2, err := ParseSelector(s.String())
		if err != nil || s2 != s {
			t.Fatalf("ParseSelector(%q).String() = %q reparses to %+v, %v", in, s.String(), s2, err)
		}
		for _, c := range cs {
			s.Match(c)
		}
	})
}
