package follow

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moatproj/moat/internal/testkit"
)

// TestRandomRotations mixes every kind of rotation, in random order and at
// random sizes, under one writer. The seed is logged; set MOAT_FOLLOW_SEED to
// replay one.
func TestRandomRotations(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MOAT_FOLLOW_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	const n = 20000
	dir := t.TempDir()
	path := filepath.Join(dir, "mixed.log")
	c := newCollector()
	w := newWriter(t, path, 0)
	start(t, c, []string{path}, nil, nil)
	kinds := map[string]int{}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer w.close()
		for w.next < n {
			if !seenGen(t, w, c) {
				return
			}
			w.lines(min(rng.IntN(2000), n-w.next))
			switch k := rng.IntN(4); k {
			case 0: // rename + create
				kinds["rename"]++
				must2(t, shift(path))
				w.reopen()
			case 1: // rename + create, writer keeps the old file a while
				kinds["rename, late reopen"]++
				must2(t, shift(path))
				must2(t, os.WriteFile(path, nil, 0o644))
				w.lines(min(rng.IntN(500), n-w.next))
				w.reopen()
			case 2: // delete + recreate
				kinds["delete"]++
				must2(t, os.Remove(path))
				w.reopen()
			case 3: // copytruncate, after the follower caught up (see TestCopyTruncate)
				kinds["copytruncate"]++
				last := w.next - 1
				if !until(t, "catch up", func() bool { return c.has(last) }) {
					return
				}
				os.Remove(path + ".3")
				os.Rename(path+".2", path+".3") // may not exist yet
				os.Rename(path+".1", path+".2")
				must2(t, copyFile(path, path+".1"))
				must2(t, os.Truncate(path, 0))
			}
		}
	})
	wg.Wait()
	t.Logf("rotations: %v", kinds)
	finish(t, c, n)
}

// TestNoBusyLoop: an idle follower makes about one pass per Poll.
func TestNoBusyLoop(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "idle.log")
	appendFile(t, path, "L0000000 \n")
	c := newCollector()
	r := start(t, c, []string{path, filepath.Join(dir, "missing.log"), filepath.Join(dir, "*.txt")}, nil, nil)
	testkit.WaitFor(t, waitMax, "first line", func() bool { return c.has(0) })
	before := r.f.passes.Load()
	const idle = 500 * time.Millisecond
	time.Sleep(idle)
	passes := r.f.passes.Load() - before
	if limit := int64(3*idle/testPoll) + 10; passes > limit {
		t.Errorf("%d passes in %v idle with Poll %v, want at most %d", passes, idle, testPoll, limit)
	}
	if passes == 0 {
		t.Error("no pass at all while idle: polling is broken")
	}
}

// BenchmarkFollow measures lines/s from a big file through the follower to a
// consumer.
func BenchmarkFollow(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	line := "Nov 26 12:00:00 host sshd[1234]: Failed password for invalid user admin from 192.0.2.1 port 22 ssh2"
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(bw, "%s %d\n", line, i)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.SetBytes(int64(len(line) + 8))
	b.ReportAllocs()
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	fl := New([]string{path}, nil, Options{Poll: 20 * time.Millisecond})
	out := make(chan Line, 1024)
	done := make(chan error, 1)
	go func() { done <- fl.Run(ctx, out) }()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		<-out
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "lines/s")
}
