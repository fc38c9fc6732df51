package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Phases of the run the probe tells apart. In a flush the probe is
// suspended: the element is gone until the daemon rebuilds its table.
const (
	phaseSteady  = "steady"
	phaseReload  = "reload"
	phaseRestart = "restart"
	phaseFlush   = "flush"
	// phaseAfterFlush is the 3 s after the element came back from a flush.
	phaseAfterFlush = "after-flush"
)

// probe watches one element of the kernel set of a jail whose
// configuration never changes: it must never be missing. It polls two ways
// at once: `nft get element` (the kernel's own lookup, through nft, about
// one poll per 10–20 ms) and a netlink dump of the set read in this
// process (a poll per millisecond or so), which can see a lapse too short
// for the first. A poll that cannot tell (nft's "Interrupted system call",
// a dump the kernel marks inconsistent because the set changed while it
// was read) is retried and counted apart, never taken for a miss.
type probe struct {
	s    *soak
	jail string
	set  string
	addr netip.Addr

	mu    sync.Mutex
	phase string
	gen   uint64
	stats map[string]*pstat // "method phase"
	// episodes are the lapses seen: runs of misses of one method, each
	// within 100 ms of the one before, with no poll that found the
	// element in between.
	episodes []*episode
	open     map[string]*episode // method → the episode a miss extends
	nMiss    int
	stopCh   chan struct{}

	nl    *netlink.Conn
	nlErr error
}

type pstat struct{ polls, misses, unsure int }

// episode is one lapse as one method saw it.
type episode struct {
	method, phase string
	first, last   time.Time
	misses        int
	detail        string
	before        string // what happened just before
	at            string // elapsed time of the run
}

func newProbe(s *soak, jail string, addr netip.Addr) *probe {
	return &probe{s: s, jail: jail, set: jail + "_v4", addr: addr, phase: phaseSteady, stats: map[string]*pstat{}, stopCh: make(chan struct{})}
}

// enter sets the phase until the returned function is called.
func (p *probe) enter(ph string) func() {
	p.mu.Lock()
	p.phase = ph
	p.gen++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.phase = phaseSteady
		p.gen++
		p.mu.Unlock()
	}
}

func (p *probe) snap() (string, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phase, p.gen
}

// record counts one poll made from phase ph (generation g). A poll that
// overlapped the start or end of a flush is dropped; one that overlapped a
// change between steady and another phase counts for the other.
func (p *probe) record(method, ph string, g uint64, res pollResult, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != g {
		if ph == phaseFlush || p.phase == phaseFlush {
			return
		}
		if ph == phaseSteady {
			ph = p.phase
		}
	}
	if ph == phaseFlush {
		return
	}
	k := method + " " + ph
	st := p.stats[k]
	if st == nil {
		st = &pstat{}
		p.stats[k] = st
	}
	if res == pollUnsure {
		st.unsure++
		return
	}
	st.polls++
	if p.open == nil {
		p.open = map[string]*episode{}
	}
	if res == pollFound {
		delete(p.open, method)
		return
	}
	st.misses++
	p.nMiss++
	now := time.Now()
	if e := p.open[method]; e != nil && now.Sub(e.last) < 100*time.Millisecond {
		e.last = now
		e.misses++
		return
	}
	e := &episode{method: method, phase: ph, first: now, last: now, misses: 1, detail: strings.TrimSpace(detail),
		before: p.s.recent(2 * time.Second), at: p.s.elapsed()}
	p.open[method] = e
	p.episodes = append(p.episodes, e)
}

type pollResult int

const (
	pollFound pollResult = iota
	pollMissing
	pollUnsure
)

// nftGet asks nft whether an element of the set covers the address: found,
// missing (no such element, or no such set or table), or unsure (any other
// failure of nft, such as an interrupted dump).
func (p *probe) nftGet() (pollResult, string) {
	out, errOut, err := nftOut(p.s.ns, "get", "element", "inet", "moat", p.set, "{ "+p.addr.String()+" }")
	switch {
	case err == nil:
		return pollFound, out
	case strings.Contains(errOut, "No such file or directory"):
		return pollMissing, fmt.Sprintf("nft get element: %v: %s", err, firstLine(errOut))
	}
	return pollUnsure, fmt.Sprintf("nft get element: %v: %s", err, firstLine(errOut))
}

// nlGet dumps the set over netlink and looks for an interval covering
// the address: the greatest key at or below it must start an interval
// (an interval set holds a start element and an end element, flagged, one
// past the last address, for each interval).
func (p *probe) nlGet() (pollResult, string) {
	attrs, _ := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte("moat\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(p.set + "\x00")},
	})
	msgs, err := p.nl.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return pollMissing, "netlink dump: " + err.Error()
		}
		return pollUnsure, "netlink dump: " + err.Error()
	}
	a := p.addr.AsSlice()
	var best []byte
	start := false
	n := 0
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return pollUnsure, "netlink dump interrupted"
		}
		if len(m.Data) < 4 {
			continue
		}
		err := forEachElem(m.Data[4:], func(key []byte, end bool) {
			n++
			if len(key) != len(a) || bytes.Compare(key, a) > 0 {
				return
			}
			switch c := bytes.Compare(key, best); {
			case best == nil || c > 0:
				best, start = key, !end
			case c == 0 && !end:
				start = true
			}
		})
		if err != nil {
			return pollUnsure, "netlink dump: " + err.Error()
		}
	}
	if best == nil || !start {
		return pollMissing, fmt.Sprintf("netlink dump: no interval covers it (%d elements)", n)
	}
	return pollFound, ""
}

// forEachElem calls f with the key and the interval-end flag of each
// element of a NFT_MSG_NEWSETELEM message's attributes.
func forEachElem(b []byte, f func(key []byte, end bool)) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != unix.NFTA_LIST_ELEM {
					continue
				}
				list.Nested(func(el *netlink.AttributeDecoder) error {
					el.ByteOrder = binary.BigEndian
					var key []byte
					end := false
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										key = append([]byte(nil), k.Bytes()...)
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							end = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						}
					}
					if key != nil {
						f(key, end)
					}
					return nil
				})
			}
			return nil
		})
	}
	return ad.Err()
}

// start runs the pollers until stop; the channel is closed when they are
// done.
func (p *probe) start() <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.loop("nft", p.nftGet, 150*time.Millisecond)
	}()
	if fd, err := os.Open("/run/netns/" + p.s.ns); err != nil {
		p.nlErr = err
	} else if c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(fd.Fd())}); err != nil {
		fd.Close()
		p.nlErr = err
	} else {
		p.nl = c
		// The two ways must agree at the start: the element is there.
		if res, detail := p.nlGet(); res != pollFound {
			p.s.fatal("the probe's netlink dump does not find %s in %s at the start, though nft does: %s", p.addr, p.set, detail)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer fd.Close()
			defer c.Close()
			p.loop("netlink", p.nlGet, 10*time.Millisecond)
		}()
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func (p *probe) stop() { close(p.stopCh) }

// loop polls as fast as it can outside the steady phase, every idle
// otherwise, and not at all during a flush.
func (p *probe) loop(method string, get func() (pollResult, string), idle time.Duration) {
	for {
		select {
		case <-p.stopCh:
			return
		case <-p.s.ctx.Done():
			return
		default:
		}
		ph, g := p.snap()
		if ph == phaseFlush {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		res, detail := get()
		p.record(method, ph, g, res, detail)
		if ph == phaseSteady {
			time.Sleep(idle)
		}
	}
}

// summary is the probe's lines of the report; a miss is a discrepancy.
func (p *probe) summary(reloads int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, method := range []string{"nft", "netlink"} {
		var parts []string
		polls, misses, unsure := 0, 0, 0
		for _, ph := range []string{phaseReload, phaseRestart, phaseAfterFlush, phaseSteady} {
			st := p.stats[method+" "+ph]
			if st == nil {
				continue
			}
			polls += st.polls
			misses += st.misses
			unsure += st.unsure
			parts = append(parts, fmt.Sprintf("%s %d/%d", ph, st.misses, st.polls))
		}
		name := "nft get element"
		if method == "netlink" {
			name = "netlink set dump"
			if p.nlErr != nil {
				out = append(out, fmt.Sprintf("%s: not run (%v)", name, p.nlErr))
				continue
			}
		}
		out = append(out, fmt.Sprintf("%s inet moat %s { %s }: %d polls, %d misses (misses/polls by phase: %s; %d more polls could not tell, retried)",
			name, p.set, p.addr, polls, misses, strings.Join(parts, ", "), unsure))
	}
	out = append(out, fmt.Sprintf("watched across %d reloads (every SIGHUP the daemon logged)", reloads))
	return out
}

// check turns misses and too few reloads into discrepancies.
func (p *probe) check(reloads int) {
	p.mu.Lock()
	eps := append([]*episode(nil), p.episodes...)
	reloadPolls := 0
	for k, st := range p.stats {
		if strings.HasSuffix(k, " "+phaseReload) {
			reloadPolls += st.polls
		}
	}
	p.mu.Unlock()
	sort.Slice(eps, func(i, k int) bool { return eps[i].first.Before(eps[k].first) })
	for _, e := range eps {
		cat := "lapse"
		if e.phase == phaseAfterFlush {
			cat = "lapse-after-flush"
		}
		p.s.probs.fail(cat, "%s %s: %s missing from %s for %s (%d polls by %s, during %s): %s (just before: %s)",
			e.first.Format("15:04:05.000000"), e.at, p.addr, p.set, e.last.Sub(e.first).Round(time.Microsecond), e.misses, e.method, e.phase, e.detail, e.before)
	}
	if reloads < 50 {
		p.s.probs.fail("lapse", "the probe was watched across only %d reloads (want at least 50)", reloads)
	}
	if reloadPolls == 0 {
		p.s.probs.fail("lapse", "the probe made no poll during a reload")
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
