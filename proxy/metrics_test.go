package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type metricsRequest struct {
	route    string
	status   int
	upstream time.Duration
	limited  bool
}

func TestMetricsRequest(t *testing.T) {
	cases := []struct {
		name  string
		reqs  []metricsRequest
		route string
		// counts by class for route, in statusClasses order
		classes [len(statusClasses)]float64
		limited float64
		// observations and their sum in the upstream histogram
		observed uint64
		sum      float64
	}{
		{"one ok", []metricsRequest{{"app", 200, 250 * time.Millisecond, false}}, "app",
			[6]float64{0, 1, 0, 0, 0, 0}, 0, 1, 0.25},
		{"each class", []metricsRequest{
			{"app", 101, time.Millisecond, false}, {"app", 204, time.Millisecond, false}, {"app", 308, time.Millisecond, false},
			{"app", 404, time.Millisecond, false}, {"app", 503, time.Millisecond, false}, {"app", 599, time.Millisecond, false},
			{"app", 600, 0, false}, {"app", 99, 0, false}, {"app", 0, 0, false},
		}, "app", [6]float64{1, 1, 1, 1, 2, 3}, 0, 6, 0.006},
		{"rate limited: no upstream", []metricsRequest{
			{"api", 429, 0, true}, {"api", 429, 0, true}, {"api", 200, 2 * time.Second, false},
		}, "api", [6]float64{0, 1, 0, 2, 0, 0}, 2, 1, 2},
		{"routes apart", []metricsRequest{
			{"a", 200, time.Second, false}, {"b", 500, time.Second, false}, {"b", 429, 0, true},
		}, "b", [6]float64{0, 0, 0, 1, 1, 0}, 1, 1, 1},
		{"negative upstream not observed", []metricsRequest{{"app", 502, -time.Second, false}}, "app",
			[6]float64{0, 0, 0, 0, 1, 0}, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m := NewMetrics(reg)
			for _, r := range c.reqs {
				m.Request(r.route, r.status, r.upstream, r.limited)
			}
			for i, class := range statusClasses {
				if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, class)); got != c.classes[i] {
					t.Errorf("requests{route=%q,class=%q} = %v, want %v", c.route, class, got, c.classes[i])
				}
			}
			if got := testutil.ToFloat64(m.limited.WithLabelValues(c.route)); got != c.limited {
				t.Errorf("rate_limited{route=%q} = %v, want %v", c.route, got, c.limited)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var count uint64
			var sum float64
			for _, mf := range mfs {
				if mf.GetName() != "moat_proxy_upstream_seconds" {
					continue
				}
				for _, s := range mf.GetMetric() {
					if s.GetLabel()[0].GetValue() == c.route {
						count, sum = s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum()
					}
				}
			}
			if count != c.observed || sum < c.sum-1e-9 || sum > c.sum+1e-9 {
				t.Errorf("upstream_seconds{route=%q} count, sum = %d, %v; want %d, %v", c.route, count, sum, c.observed, c.sum)
			}
		})
	}
}

func TestMetricsExposition(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	m.Request("app", 200, 3*time.Millisecond, false)
	m.Request("app", 429, 0, true)
	m.CertExpiry("app.example.com", time.Unix(1800000000, 0))
	m.CertExpiry("app.example.com", time.Unix(1900000000, 0)) // renewed
	want := `
# HELP moat_proxy_cert_expiry_timestamp_seconds When the certificate served for a host name expires, in Unix seconds.
# TYPE moat_proxy_cert_expiry_timestamp_seconds gauge
moat_proxy_cert_expiry_timestamp_seconds{host="app.example.com"} 1.9e+09
# HELP moat_proxy_rate_limited_total Requests refused with 429 by a rate limit, by route.
# TYPE moat_proxy_rate_limited_total counter
moat_proxy_rate_limited_total{route="app"} 1
# HELP moat_proxy_requests_total Requests the proxy answered, by route and status class (1xx to 5xx).
# TYPE moat_proxy_requests_total counter
moat_proxy_requests_total{class="1xx",route="app"} 0
moat_proxy_requests_total{class="2xx",route="app"} 1
moat_proxy_requests_total{class="3xx",route="app"} 0
moat_proxy_requests_total{class="4xx",route="app"} 1
moat_proxy_requests_total{class="5xx",route="app"} 0
moat_proxy_requests_total{class="other",route="app"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"moat_proxy_cert_expiry_timestamp_seconds", "moat_proxy_rate_limited_total", "moat_proxy_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.upstream, "moat_proxy_upstream_seconds"); n != 1 {
		t.Errorf("%d upstream histograms, want 1", n)
	}
	// No series is labelled by anything but route, class or host.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "route", "class", "host", "le":
				default:
					t.Errorf("%s has label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	m.Request("app", 200, time.Second, true)
	m.CertExpiry("h", time.Unix(0, 0))
}

func TestMetricsNilRegisterer(t *testing.T) {
	m := NewMetrics(nil)
	m.Request("app", 200, time.Second, false)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("app", "2xx")); got != 1 {
		t.Errorf("requests = %v, want 1 (recorded though not registered)", got)
	}
}

// TestMetricsReload makes the series twice on one registry, as a
// configuration reload does: the second set adds to the first.
func TestMetricsReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg).Request("app", 200, 0, false)
	m := NewMetrics(reg)
	m.Request("app", 200, 0, false)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("app", "2xx")); got != 2 {
		t.Errorf("requests after reload = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "moat_proxy_requests_total"); err != nil || n != len(statusClasses) {
		t.Errorf("GatherAndCount = %d, %v; want %d", n, err, len(statusClasses))
	}
}

func TestMetricsRegisterConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_proxy_requests_total", Help: "other"}))
	defer func() {
		if recover() == nil {
			t.Error("NewMetrics with a conflicting series did not panic")
		}
	}()
	NewMetrics(reg)
}

func BenchmarkMetricsRequest(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("app", 200, 3*time.Millisecond, false)
		}
	})
}
