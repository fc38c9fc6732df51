package ini

import (
	"fmt"
	"io/fs"
	"path"
	"testing"
)

// FuzzINI checks that no input makes the reader panic or hang: the text is
// read as a.conf (which b.conf includes and a.local may override), and
// every option is got from every section.
func FuzzINI(f *testing.F) {
	for _, c := range oracleCases {
		for _, text := range c.files {
			f.Add(text)
		}
	}
	f.Add("[INCLUDES]\nbefore = ./a.conf\n  ./a.conf\nafter = b.conf\n[s]\nx = %(known/x)s%(known/x)s\n")
	f.Add("[s]\na = %(b)s%(b)s%(b)s%(b)s\nb = %(c)s%(c)s%(c)s%(c)s\nc = %(d)s%(d)s%(d)s%(d)s\nd = %(e)s%(e)s%(e)s\ne = %(f)s%(f)s\nf = %(g)s\ng =\n")
	f.Fuzz(func(t *testing.T, text string) {
		files := map[string]string{
			"a.conf":  text,
			"a.local": "[s]\nx = %(known/x)s local\n",
			"b.conf":  "[INCLUDES]\nbefore = a.conf\n[s]\nx = b %(known/x)s\n",
		}
		r := NewReader(func(name string) ([]byte, error) {
			if s, ok := files[path.Clean(name)]; ok {
				return []byte(s), nil
			}
			return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
		})
		doc, _, err := r.Read("b.conf", "a.conf")
		if err != nil {
			return
		}
		for _, n := range append([]string{Default}, doc.Sections()...) {
			for _, k := range append(doc.Section(n).Keys(), doc.Section(Default).Keys()...) {
				_, _, _ = doc.Get(n, k, func(name string) (string, bool) {
					if name == "v" {
						return "%(x)s", true
					}
					return "", false
				})
			}
		}
	})
}
