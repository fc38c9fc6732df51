package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moatproj/moat/firewall"
	"github.com/moatproj/moat/jail"
)

// metrics are the daemon's Prometheus series. None is labelled by address.
type metrics struct {
	reg        *prometheus.Registry
	lines      *prometheus.CounterVec
	failures   *prometheus.CounterVec
	bans       *prometheus.CounterVec
	unbans     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	activeBans func(jail string) []jail.Ban
	// status is the engine's per-jail counts (moat_failures_too_old_total).
	status func(jail string) ([]jail.Status, error)
	// firewall is what the firewall checks found.
	firewall func() jail.FirewallStatus
}

// jailMetrics are one jail's series, resolved once so that the per-line
// path does no label lookup.
type jailMetrics struct {
	lines, failures prometheus.Counter
	latency         prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_lines_read_total", Help: "Log lines read and matched against a jail's filter.",
		}, []string{"jail"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_failures_total", Help: "Failures found by a jail's filter.",
		}, []string{"jail"}),
		bans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_bans_total", Help: "Bans made, automatic and manual.",
		}, []string{"jail"}),
		unbans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_unbans_total", Help: "Bans lifted, by reason (unban: by an operator; expire: time ran out).",
		}, []string{"jail", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moat_ban_latency_seconds",
			Help:    "Time from reading the line that triggered a ban to the ban being durable and in the firewall.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"jail"}),
	}
	m.reg.MustRegister(m.lines, m.failures, m.bans, m.unbans, m.latency, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) forJail(name string) jailMetrics {
	return jailMetrics{
		lines:    m.lines.WithLabelValues(name),
		failures: m.failures.WithLabelValues(name),
		latency:  m.latency.WithLabelValues(name),
	}
}

// event counts bans and unbans as the engine reports them.
func (m *metrics) event(e jail.Event) {
	switch e.Kind {
	case "ban":
		m.bans.WithLabelValues(e.Ban.Jail).Inc()
	case "unban", "expire":
		m.unbans.WithLabelValues(e.Ban.Jail, e.Kind).Inc()
	}
}

var (
	activeDesc  = prometheus.NewDesc("moat_active_bans", "Bans in force now.", []string{"jail"}, nil)
	repairsDesc = prometheus.NewDesc("moat_firewall_repairs_total",
		"Differences between the kernel and moat's bans found and repaired by the firewall check, by kind "+
			"(missing: banned but not in the kernel; stray: in the kernel, no ban covers it; timeout: wrong expiry; layout: table, chain, rules or sets rebuilt).",
		[]string{"kind"}, nil)
	matchedDesc = prometheus.NewDesc("moat_firewall_matched",
		"1 when the last firewall check found the kernel holding exactly moat's bans, else 0.", nil, nil)
	lastCheckDesc = prometheus.NewDesc("moat_firewall_last_check_timestamp_seconds",
		"When the firewall was last compared with moat's bans.", nil, nil)
	tooOldDesc = prometheus.NewDesc("moat_failures_too_old_total",
		"Failures skipped because their time was more than the jail's findtime before they were read: they cannot lead to a ban.",
		[]string{"jail"}, nil)
	lastRepairDesc = prometheus.NewDesc("moat_firewall_last_repair_timestamp_seconds",
		"When a firewall check last repaired a difference (absent: never).", nil, nil)
)

// repairKinds are the kinds moat_firewall_repairs_total always has, at 0
// until a repair of that kind.
var repairKinds = []string{firewall.RepairMissing, firewall.RepairStray, firewall.RepairTimeout, firewall.RepairLayout}

// Describe and Collect make metrics a collector of the active-ban gauge and
// the firewall check's series, read from the engine at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeDesc
	ch <- repairsDesc
	ch <- matchedDesc
	ch <- lastCheckDesc
	ch <- lastRepairDesc
	ch <- tooOldDesc
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if m.firewall != nil {
		st := m.firewall()
		for _, k := range repairKinds {
			ch <- prometheus.MustNewConstMetric(repairsDesc, prometheus.CounterValue, float64(st.Repairs[k]), k)
		}
		if !st.LastCheck.IsZero() {
			matched := 0.0
			if st.Matched {
				matched = 1
			}
			ch <- prometheus.MustNewConstMetric(matchedDesc, prometheus.GaugeValue, matched)
			ch <- prometheus.MustNewConstMetric(lastCheckDesc, prometheus.GaugeValue, float64(st.LastCheck.UnixNano())/1e9)
		}
		if !st.LastRepair.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastRepairDesc, prometheus.GaugeValue, float64(st.LastRepair.UnixNano())/1e9)
		}
	}
	if m.status != nil {
		sts, _ := m.status("")
		for _, s := range sts {
			ch <- prometheus.MustNewConstMetric(tooOldDesc, prometheus.CounterValue, float64(s.TooOld), s.Jail)
		}
	}
	if m.activeBans == nil {
		return
	}
	counts := map[string]int{}
	for _, b := range m.activeBans("") {
		counts[b.Jail]++
	}
	for j, n := range counts {
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(n), j)
	}
}

// serve serves /metrics on addr until ctx is done.
func (m *metrics) serve(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
