package follow

import (
	"bytes"
	"context"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

// splitRef is the reference: the whole lines of data, each cut to MaxLine,
// with the offset just past its newline.
func splitRef(data []byte) (texts []string, offs []int64) {
	start := 0
	for {
		i := bytes.IndexByte(data[start:], '\n')
		if i < 0 {
			return texts, offs
		}
		line := data[start : start+i]
		if len(line) > MaxLine {
			line = line[:MaxLine]
		}
		texts = append(texts, string(line))
		offs = append(offs, int64(start+i+1))
		start += i + 1
	}
}

// feed runs data through a reader in chunks cut at the given sizes.
func feed(data []byte, cuts []int) []Line {
	r := &reader{path: "/l", id: fileID{ino: 1}}
	out := make(chan Line, bytes.Count(data, []byte{'\n'})+1)
	for len(data) > 0 {
		n := len(data)
		if len(cuts) > 0 {
			n = min(max(cuts[0], 1), len(data))
			cuts = cuts[1:]
		}
		if err := r.lines(context.Background(), data[:n], time.Time{}, out); err != nil {
			panic(err)
		}
		data = data[n:]
	}
	close(out)
	var got []Line
	for l := range out {
		got = append(got, l)
	}
	return got
}

var splitCases = []struct {
	name string
	data string
	cuts []int
}{
	{"empty", "", nil},
	{"one line", "a\n", nil},
	{"no newline", "abc", nil},
	{"empty lines", "\n\n\n", []int{1, 1}},
	{"split everywhere", "ab\ncd\nef", []int{1, 1, 1, 1, 1, 1, 1, 1}},
	{"crlf kept", "a\r\nb\r\n", []int{2}},
	{"nul and bad utf8", "\x00\xff\n\xfe\x00\n", []int{3}},
	{"long line in pieces", strings.Repeat("z", MaxLine+100) + "\nok\n", []int{1000, MaxLine, 50}},
	{"long line at once", strings.Repeat("z", 2*MaxLine) + "\n", nil},
	{"exactly MaxLine", strings.Repeat("q", MaxLine) + "\n", []int{MaxLine}},
	{"short lines across fingerprint", strings.Repeat("ab\n", 40), []int{5, 7, 64, 3}},
}

func TestLines(t *testing.T) {
	for _, tc := range splitCases {
		t.Run(tc.name, func(t *testing.T) { checkLines(t, []byte(tc.data), tc.cuts) })
	}
}

func checkLines(t *testing.T, data []byte, cuts []int) {
	t.Helper()
	got := feed(data, cuts)
	texts, offs := splitRef(data)
	if len(got) != len(texts) {
		t.Fatalf("%d lines, want %d", len(got), len(texts))
	}
	for i, l := range got {
		if l.Text != texts[i] || l.Pos.Offset != offs[i] {
			t.Fatalf("line %d = %.20q at %d, want %.20q at %d", i, l.Text, l.Pos.Offset, texts[i], offs[i])
		}
		from := max(0, offs[i]-fpSize)
		if want := crc32.Checksum(data[from:offs[i]], castagnoli); l.Pos.Sum != want {
			t.Fatalf("line %d: Sum %d, want %d", i, l.Pos.Sum, want)
		}
	}
}

// FuzzLines: any bytes, cut into any chunks, split like the reference.
func FuzzLines(f *testing.F) {
	for _, tc := range splitCases {
		var cuts []byte
		for _, c := range tc.cuts {
			cuts = append(cuts, byte(c))
		}
		f.Add([]byte(tc.data), cuts)
	}
	f.Fuzz(func(t *testing.T, data, cutBytes []byte) {
		var cuts []int
		for _, c := range cutBytes {
			cuts = append(cuts, int(c)+1)
		}
		checkLines(t, data, cuts)
	})
}
