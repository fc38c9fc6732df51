package fail2ban

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moatproj/moat/firewall"
)

// services are the service names jail.conf's port options use, with their
// IANA port numbers. moat reads no /etc/services: the list is fixed.
var services = map[string]uint16{
	"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25,
	"domain": 53, "http": 80, "pop3": 110, "nntp": 119, "imap": 143,
	"imap2": 143, "ldap": 389, "https": 443, "smtps": 465, "ssmtp": 465,
	"submissions": 465, "isakmp": 500, "submission": 587, "ldaps": 636,
	"rsync": 873, "ftps-data": 989, "ftps": 990, "imaps": 993, "pop3s": 995,
	"socks": 1080, "ms-sql-s": 1433, "mysql": 3306, "squid": 3128,
	"sieve": 4190, "ipsec-nat-t": 4500, "postgresql": 5432, "sip": 5060,
	"sip-tls": 5061, "xmpp-client": 5222, "ircd": 6667, "http-alt": 8080,
	"webmin": 10000, "mongodb": 27017,
}

// ParsePorts reads a fail2ban port option: names and numbers separated by
// commas or spaces, ranges written a:b (or a-b). It returns the ranges
// sorted and merged; nil means every port (also for 0:65535 and 1:65535,
// which cover them all).
func ParsePorts(s string) ([]firewall.PortRange, error) {
	var out []firewall.PortRange
	for _, w := range splitWords(s) {
		r, err := parsePortRange(w)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	out = mergePorts(out)
	if len(out) == 1 && out[0].First <= 1 && out[0].Last == 65535 {
		return nil, nil
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	if p, ok := services[strings.ToLower(s)]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: want a number up to 65535 or a known service name", s)
	}
	return uint16(n), nil
}

func parsePortRange(s string) (firewall.PortRange, error) {
	first, last, isRange := strings.Cut(s, ":")
	if !isRange {
		first, last, isRange = strings.Cut(s, "-")
		if isRange && services[strings.ToLower(s)] != 0 {
			isRange = false
		}
	}
	if !isRange {
		p, err := parsePort(s)
		if err != nil {
			return firewall.PortRange{}, err
		}
		if p == 0 {
			return firewall.PortRange{}, fmt.Errorf("port %q: port 0 is no port", s)
		}
		return firewall.PortRange{First: p, Last: p}, nil
	}
	a, err := parsePort(first)
	if err != nil {
		return firewall.PortRange{}, err
	}
	b, err := parsePort(last)
	if err != nil {
		return firewall.PortRange{}, err
	}
	if b < a {
		return firewall.PortRange{}, fmt.Errorf("port range %q ends before it starts", s)
	}
	if b == 0 {
		return firewall.PortRange{}, fmt.Errorf("port range %q: port 0 is no port", s)
	}
	return firewall.PortRange{First: a, Last: b}, nil
}

// mergePorts sorts ranges and merges those that overlap or touch; a range
// starting at port 0 starts at 1 (0 is no port a packet can have).
func mergePorts(rs []firewall.PortRange) []firewall.PortRange {
	if len(rs) == 0 {
		return nil
	}
	for i := range rs {
		if rs[i].First == 0 {
			rs[i].First = 1
		}
	}
	return firewall.MergePorts(rs)
}

// splitWords splits s at commas, spaces and newlines (fail2ban's
// splitwords), dropping empty words.
func splitWords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r'
	})
}

// portString formats a range as "22" or "8000-8100".
func portString(first, last uint16) string {
	if first == last {
		return strconv.Itoa(int(first))
	}
	return strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
}
