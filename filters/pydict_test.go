package filters

import (
	"reflect"
	"sync/atomic"
	"testing"
)

func TestPyGroups(t *testing.T) {
	var n atomic.Int64
	cr, err := compileRegex("t", `^(?P<alt_user_1>\w*) (?P<user>x)? (?P<ip4>[\d.]+)(?P<nofail>!)?$`, "t", &n)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := cr.pyGroups([]byte("alice  192.0.2.1"))
	if !ok {
		t.Fatal("no match")
	}
	want := pyDict{
		{Key: "alt_user_1", Str: "alice"},
		{Key: "user", Str: "alice"}, // None, given the alternative's value in place
		{Key: "ip4", Str: "192.0.2.1"},
		{Key: "nofail", None: true},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("pyGroups = %+v, want %+v", d, want)
	}
}

func TestMergeFields(t *testing.T) {
	cur := func(user string, nofail bool) pyDict {
		d := pyDict{{Key: "mlfid", Str: "c1"}, {Key: "user", Str: user}, {Key: "ip4", None: true}}
		if nofail {
			d = append(d, Field{Key: "nofail", Str: "x"})
		} else {
			d = append(d, Field{Key: "nofail", None: true})
		}
		return d
	}
	// A new group keeps the line's dictionary, None values too, and a
	// users set.
	var e mlGroup
	mergeFields(&e, cur("bob", true), false, false)
	want := pyDict{{Key: "mlfid", Str: "c1"}, {Key: "user", Str: "bob"}, {Key: "ip4", None: true}, {Key: "nofail", Str: "x"}, {Key: "users", Set: []string{"bob"}}}
	if !reflect.DeepEqual(e.fields, want) {
		t.Fatalf("new group: %+v, want %+v", e.fields, want)
	}
	// The next line: nofail is taken out and comes back only if set;
	// None values do not overwrite; a second user joins the set.
	next := cur("eve", false)
	next[2] = Field{Key: "ip4", Str: "192.0.2.7"}
	mergeFields(&e, next, true, false)
	want = pyDict{{Key: "mlfid", Str: "c1"}, {Key: "user", Str: "eve"}, {Key: "ip4", Str: "192.0.2.7"}, {Key: "users", Set: []string{"bob", "eve"}}}
	if !reflect.DeepEqual(e.fields, want) {
		t.Fatalf("merged: %+v, want %+v", e.fields, want)
	}
	// A new group closed by its first line gets no users set.
	var f mlGroup
	mergeFields(&f, cur("dave", false), false, true)
	if _, ok := f.fields.get("users"); ok {
		t.Errorf("forgotten new group has users: %+v", f.fields)
	}
}
