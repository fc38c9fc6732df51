package firewall

import (
	"reflect"
	"testing"
)

func TestMergePorts(t *testing.T) {
	cases := []struct {
		name    string
		in, out []PortRange
	}{
		{"none", nil, nil},
		{"sorted apart", []PortRange{{80, 80}, {22, 22}}, []PortRange{{22, 22}, {80, 80}}},
		{"overlapping", []PortRange{{1000, 2000}, {1500, 3000}}, []PortRange{{1000, 3000}}},
		{"touching", []PortRange{{443, 443}, {80, 442}}, []PortRange{{80, 443}}},
		{"inside", []PortRange{{1, 65535}, {22, 22}}, []PortRange{{1, 65535}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := MergePorts(c.in); !reflect.DeepEqual(got, c.out) {
				t.Errorf("MergePorts = %v, want %v", got, c.out)
			}
		})
	}
}
