package proxy

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus series. None is labelled by client
// address: a route label has the cardinality of the configuration, a host
// label that of the certificates. A nil *Metrics is valid and records
// nothing. All methods are safe for concurrent use.
type Metrics struct {
	requests   *prometheus.CounterVec
	limited    *prometheus.CounterVec
	upstream   *prometheus.HistogramVec
	certExpiry *prometheus.GaugeVec
	routes     sync.Map // route name → *routeMetrics
}

// routeMetrics are one route's series, resolved once so that a request
// does no label lookup.
type routeMetrics struct {
	classes  [len(statusClasses)]prometheus.Counter
	limited  prometheus.Counter
	upstream prometheus.Observer
}

// statusClasses are the values of the class label; the last is for a
// status outside 100–599.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// upstreamBuckets are the bounds of moat_proxy_upstream_seconds.
var upstreamBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics makes the proxy's series and registers them with reg (none
// when reg is nil). Series already registered by an earlier NewMetrics on
// the same registry, as after a configuration reload, are reused; any other
// registration conflict panics, as it is a programming error.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_proxy_requests_total",
			Help: "Requests the proxy answered, by route and status class (1xx to 5xx).",
		}, []string{"route", "class"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_proxy_rate_limited_total",
			Help: "Requests refused with 429 by a rate limit, by route.",
		}, []string{"route"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moat_proxy_upstream_seconds",
			Help:    "Time from sending a request upstream to the response headers, by route.",
			Buckets: upstreamBuckets,
		}, []string{"route"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "moat_proxy_cert_expiry_timestamp_seconds",
			Help: "When the certificate served for a host name expires, in Unix seconds.",
		}, []string{"host"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.limited = register(reg, m.limited)
		m.upstream = register(reg, m.upstream)
		m.certExpiry = register(reg, m.certExpiry)
	}
	return m
}

// register registers c, or returns the collector already registered in its
// place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old
		}
	}
	panic("proxy: register metrics: " + err.Error())
}

// forRoute returns the route's series, made on first use.
func (m *Metrics) forRoute(route string) *routeMetrics {
	if rm, ok := m.routes.Load(route); ok {
		return rm.(*routeMetrics)
	}
	rm := &routeMetrics{
		limited:  m.limited.WithLabelValues(route),
		upstream: m.upstream.WithLabelValues(route),
	}
	for i, c := range statusClasses {
		rm.classes[i] = m.requests.WithLabelValues(route, c)
	}
	actual, _ := m.routes.LoadOrStore(route, rm)
	return actual.(*routeMetrics)
}

// Request records one answered request on route: its status, how long the
// upstream took (not recorded when zero or negative: no upstream was asked)
// and whether a rate limit refused it.
func (m *Metrics) Request(route string, status int, upstream time.Duration, limited bool) {
	if m == nil {
		return
	}
	rm := m.forRoute(route)
	class := len(statusClasses) - 1
	if status >= 100 && status < 600 {
		class = status/100 - 1
	}
	rm.classes[class].Inc()
	if limited {
		rm.limited.Inc()
	}
	if upstream > 0 {
		rm.upstream.Observe(upstream.Seconds())
	}
}

// CertExpiry records when the certificate served for host expires; a later
// call for the same host (a renewal) replaces the value.
func (m *Metrics) CertExpiry(host string, notAfter time.Time) {
	if m == nil {
		return
	}
	m.certExpiry.WithLabelValues(host).Set(float64(notAfter.Unix()))
}
