package fail2ban

import (
	"testing"

	"github.com/moatproj/moat/firewall"
)

func pr(first, last uint16) firewall.PortRange { return firewall.PortRange{First: first, Last: last} }

var portTests = []struct {
	name    string
	in      string
	want    []firewall.PortRange
	wantErr bool
}{
	{name: "name", in: "ssh", want: []firewall.PortRange{pr(22, 22)}},
	{name: "names", in: "http,https", want: []firewall.PortRange{pr(80, 80), pr(443, 443)}},
	{name: "spaces and numbers", in: " 80,443, 3128 8080", want: []firewall.PortRange{pr(80, 80), pr(443, 443), pr(3128, 3128), pr(8080, 8080)}},
	{name: "colon range", in: "8000:8100", want: []firewall.PortRange{pr(8000, 8100)}},
	{name: "dash range", in: "5060-5061", want: []firewall.PortRange{pr(5060, 5061)}},
	{name: "dashed service", in: "ftp,ftp-data,ftps,ftps-data", want: []firewall.PortRange{pr(20, 21), pr(989, 990)}},
	{name: "merged", in: "smtp,465,submission,ssmtp", want: []firewall.PortRange{pr(25, 25), pr(465, 465), pr(587, 587)}},
	{name: "all ports", in: "0:65535", want: nil},
	{name: "all ports from 1", in: "1:65535", want: nil},
	{name: "unknown name", in: "gopher-plus", wantErr: true},
	{name: "backwards", in: "90:80", wantErr: true},
	{name: "too big", in: "70000", wantErr: true},
	{name: "port zero", in: "0", wantErr: true},
}

// TestParsePorts checks fail2ban port options: ParsePorts(in) = want.
func TestParsePorts(t *testing.T) {
	for _, tt := range portTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePorts(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && !equalRanges(got, tt.want) {
				t.Fatalf("ParsePorts(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func equalRanges(a, b []firewall.PortRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzParsePorts(f *testing.F) {
	for _, tt := range portTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParsePorts(s)
		if err != nil {
			return
		}
		for i, r := range rs {
			if r.First == 0 || r.Last < r.First || i > 0 && int(rs[i-1].Last)+1 >= int(r.First) {
				t.Fatalf("ParsePorts(%q) = %v: not sorted, merged ranges of real ports", s, rs)
			}
		}
	})
}
