package filters

import (
	"encoding/binary"
	"regexp/syntax"
	"slices"
	"sync"
	"unicode/utf8"
)

// lineGate tells, in one pass over a line, whether any of a filter's
// regexes could match somewhere in it. It runs a lazily built DFA over the
// union of the regexes with every assertion (^, $, \b, \B) taken out and
// every capture ignored, searching unanchored: a language that holds every
// text any of them matches, and every substring of the line such a match
// could be made on (a prefregex's content, the line less its date). A line
// it rejects matches none of them, and is missed without running a regex.
//
// A lineGate is safe for concurrent use: each goroutine takes a DFA cache
// from a free list (not a sync.Pool, which drops them at every other
// garbage collection and would have them built again and again).
type lineGate struct {
	prog  *syntax.Prog
	start []uint32 // the instructions the empty prefix reaches
	// class maps an ASCII byte to its class: bytes no instruction tells
	// apart share one, and a state's transitions are kept per class.
	class   [utf8.RuneSelf]uint8
	nclass  int
	example []rune // a byte of each class
	mu      sync.Mutex
	free    []*gateCache
}

// maxFreeCaches bounds the caches a gate keeps for reuse.
const maxFreeCaches = 16

// get takes a cache from the free list, or makes one.
func (g *lineGate) get() *gateCache {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := len(g.free); n > 0 {
		c := g.free[n-1]
		g.free = g.free[:n-1]
		return c
	}
	return g.newCache()
}

// put gives a cache back for reuse.
func (g *lineGate) put(c *gateCache) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.free) < maxFreeCaches {
		g.free = append(g.free, c)
	}
}

// maxGateStates bounds the DFA states a cache holds: past it the cache
// starts again from nothing.
const maxGateStates = 2000

// gateCache is one goroutine's DFA: the states met so far.
type gateCache struct {
	states map[string]int32
	pcs    [][]uint32 // of each state, by id
	match  []bool     // of each state, by id
	// trans holds the transition of state s on class k at s*nclass+k
	// (see run).
	trans []int32
	start int32
	// work space for step
	seen  []bool
	list  []uint32
	stack []uint32
	key   []byte
}

// newLineGate builds the gate for the Go regexes srcs, or returns nil when
// one of them does not parse (the caller then runs without a gate).
func newLineGate(srcs []string) *lineGate {
	if len(srcs) == 0 {
		return nil
	}
	union := &syntax.Regexp{Op: syntax.OpAlternate}
	for _, src := range srcs {
		re, err := syntax.Parse(src, syntax.Perl)
		if err != nil {
			return nil
		}
		union.Sub = append(union.Sub, loosen(re))
	}
	prog, err := syntax.Compile(union.Simplify())
	if err != nil {
		return nil
	}
	g := &lineGate{prog: prog}
	g.classes()
	c := g.newCache()
	g.start = slices.Clone(c.pcs[c.start])
	if c.match[c.start] {
		return nil // matches the empty text: it would pass every line
	}
	g.put(c)
	return g
}

// loosen replaces every assertion in re by the empty match, in place, and
// returns re: the result matches every text re matches.
func loosen(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		re.Op = syntax.OpEmptyMatch
	}
	for _, s := range re.Sub {
		loosen(s)
	}
	return re
}

// classes sorts the ASCII bytes into classes by which rune instructions
// take them.
func (g *lineGate) classes() {
	ids := map[string]uint8{}
	sig := make([]byte, 0, len(g.prog.Inst))
	for b := range rune(utf8.RuneSelf) {
		sig = sig[:0]
		for i := range g.prog.Inst {
			if takes(&g.prog.Inst[i], b) {
				sig = append(sig, 1)
			} else {
				sig = append(sig, 0)
			}
		}
		id, ok := ids[string(sig)]
		if !ok {
			id = uint8(len(ids))
			ids[string(sig)] = id
			g.example = append(g.example, b)
		}
		g.class[b] = id
	}
	g.nclass = len(ids)
}

// takes reports whether instruction in consumes r.
func takes(in *syntax.Inst, r rune) bool {
	switch in.Op {
	case syntax.InstRune, syntax.InstRune1:
		return in.MatchRune(r)
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}

func (g *lineGate) newCache() *gateCache {
	n := len(g.prog.Inst)
	c := &gateCache{seen: make([]bool, n)}
	c.reset(g)
	return c
}

// reset empties the cache and makes its start state.
func (c *gateCache) reset(g *lineGate) {
	c.states = make(map[string]int32)
	c.pcs, c.match, c.trans = c.pcs[:0], c.match[:0], c.trans[:0]
	c.list = c.list[:0]
	c.add(g, uint32(g.prog.Start))
	c.start = c.state(g)
}

// add puts pc and what it reaches without consuming a rune into c.list;
// it reports a match instruction by adding it too.
func (c *gateCache) add(g *lineGate, pc uint32) {
	c.stack = append(c.stack[:0], pc)
	for len(c.stack) > 0 {
		pc := c.stack[len(c.stack)-1]
		c.stack = c.stack[:len(c.stack)-1]
		if c.seen[pc] {
			continue
		}
		c.seen[pc] = true
		in := &g.prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			c.stack = append(c.stack, in.Arg, in.Out)
		case syntax.InstCapture, syntax.InstNop, syntax.InstEmptyWidth:
			// Assertions were loosened away; any left pass.
			c.stack = append(c.stack, in.Out)
		case syntax.InstFail:
		default: // InstMatch and the rune instructions
			c.list = append(c.list, pc)
		}
	}
}

// state returns the state for c.list (then cleared, with the marks of
// add), making it if new.
func (c *gateCache) state(g *lineGate) int32 {
	slices.Sort(c.list)
	c.list = slices.Compact(c.list)
	c.key = c.key[:0]
	for _, pc := range c.list {
		c.key = binary.LittleEndian.AppendUint32(c.key, pc)
	}
	if id, ok := c.states[string(c.key)]; ok {
		c.clearSeen()
		return id
	}
	id := int32(len(c.pcs))
	match := false
	for _, pc := range c.list {
		if g.prog.Inst[pc].Op == syntax.InstMatch {
			match = true
		}
	}
	c.pcs = append(c.pcs, slices.Clone(c.list))
	c.match = append(c.match, match)
	for range g.nclass {
		c.trans = append(c.trans, gateUnknown)
	}
	c.states[string(c.key)] = id
	c.clearSeen()
	return id
}

// clearSeen forgets the marks add left on instructions it did not list.
func (c *gateCache) clearSeen() {
	clear(c.seen)
	c.list = c.list[:0]
}

// step returns the state after s reads r (searching unanchored: the start
// instructions are always alive again).
func (c *gateCache) step(g *lineGate, s int32, r rune) int32 {
	c.list = c.list[:0]
	for _, pc := range c.pcs[s] {
		if in := &g.prog.Inst[pc]; takes(in, r) {
			c.add(g, in.Out)
		}
	}
	for _, pc := range g.start {
		c.add(g, pc)
	}
	return c.state(g)
}

// mayMatch reports whether one of the gate's regexes may match in text:
// false means none does.
func (g *lineGate) mayMatch(text []byte) bool {
	c := g.get()
	defer g.put(c)
	return g.run(c, text)
}

// Transitions in gateCache.trans are the row (id*nclass) of the next
// state, or one of these.
const (
	gateUnknown = -1 // not worked out yet
	gateMatch   = -2 // a match ends here: the search is over
)

// run is mayMatch with a cache of the caller's (from newCache, used by
// one goroutine at a time).
func (g *lineGate) run(c *gateCache, text []byte) bool {
	if len(c.pcs) > maxGateStates {
		c.reset(g)
	}
	nc := int32(g.nclass)
	row := c.start * nc
	trans := c.trans
	for i := 0; i < len(text); i++ {
		b := text[i]
		var n int32
		if b < utf8.RuneSelf {
			k := row + int32(g.class[b&0x7f])
			n = trans[k]
			if n == gateUnknown {
				n = c.next(g, row/nc, g.example[g.class[b&0x7f]])
				c.trans[k] = n
				trans = c.trans
			}
		} else {
			r, size := utf8.DecodeRune(text[i:])
			n = c.next(g, row/nc, r)
			trans = c.trans
			i += size - 1
		}
		if n == gateMatch {
			return true
		}
		row = n
	}
	return false
}

// next is the transition from state s on r, as run keeps it.
func (c *gateCache) next(g *lineGate, s int32, r rune) int32 {
	id := c.step(g, s, r)
	if c.match[id] {
		return gateMatch
	}
	return id * int32(g.nclass)
}
