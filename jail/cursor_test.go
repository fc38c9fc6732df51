package jail

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/moatproj/moat/sources"
)

// Journal cursors as journald writes them (the tests only need them to be
// distinct strings; these have the real form).
const (
	cur1 = "s=ced636f30bac4fb1be09b63e5fe5368f;i=44b;b=2487cfbf5e104c36b8ee73e643e0b10f;m=56b7b6945;t=66215567d03c2;x=bb37dd267d6372d5"
	cur2 = "s=ced636f30bac4fb1be09b63e5fe5368f;i=44c;b=2487cfbf5e104c36b8ee73e643e0b10f;m=56b7ba740;t=66215567d41bc;x=d2313bbd76f67091"
	cur3 = "s=ced636f30bac4fb1be09b63e5fe5368f;i=44d;b=2487cfbf5e104c36b8ee73e643e0b10f;m=56f0938a2;t=662155a0ad31e;x=333a0a2f35503dfe"
)

const sshKey = "journal:_SYSTEMD_UNIT=sshd.service + _COMM=sshd"

// TestCursorPositions: a journal cursor given with Advance, Failure and
// Failures comes back from Positions as it was given, beside file
// positions, after a checkpoint and across Close and Open.
func TestCursorPositions(t *testing.T) {
	r := newRig(t, jailCfg("sshd"), jailCfg("other"))
	file := sources.Position{Path: "/var/log/auth.log", Inode: 3, Offset: 40, Sum: 9}
	r.e.Advance(file)
	r.e.Advance(sources.Position{Path: sshKey, Cursor: cur1})
	r.fail("sshd", "203.0.113.5", t0, sources.Position{Path: "journal:", Cursor: cur1})
	fs := []Failure{
		{Jail: "sshd", Addr: netip.MustParseAddr("203.0.113.6"), Time: t0},
		{Jail: "other", Addr: netip.MustParseAddr("203.0.113.6"), Time: t0},
	}
	if _, _, err := r.e.Failures(context.Background(), fs, sources.Position{Path: sshKey, Cursor: cur2}); err != nil {
		t.Fatal(err)
	}
	want := []sources.Position{
		file,
		{Path: "journal:", Cursor: cur1},
		{Path: sshKey, Cursor: cur2},
	}
	checkReopen(t, r, want)

	// A later cursor replaces the saved one; so does a file position
	// given under the same key, and a cursor the file position again.
	r.e.Advance(sources.Position{Path: sshKey, Cursor: cur3})
	r.e.Advance(sources.Position{Path: "journal:", Inode: 1, Offset: 5})
	r.e.Advance(sources.Position{Path: "/var/log/auth.log", Cursor: cur1})
	want = []sources.Position{
		{Path: "/var/log/auth.log", Cursor: cur1},
		{Path: "journal:", Inode: 1, Offset: 5},
		{Path: sshKey, Cursor: cur3},
	}
	checkReopen(t, r, want)
	// Each key is in one bucket only.
	r.e.Close()
	db, err := bolt.Open(filepath.Join(r.dir, "moat.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var inPos, inCur []string
	db.View(func(tx *bolt.Tx) error {
		tx.Bucket(bktPositions).ForEach(func(k, _ []byte) error { inPos = append(inPos, string(k)); return nil })
		tx.Bucket(bktCursors).ForEach(func(k, _ []byte) error { inCur = append(inCur, string(k)); return nil })
		return nil
	})
	db.Close()
	if !slices.Equal(inPos, []string{"journal:"}) || !slices.Equal(inCur, []string{"/var/log/auth.log", sshKey}) {
		t.Errorf("positions bucket holds %q, cursors bucket %q", inPos, inCur)
	}
}

// TestCursorForget: ForgetPositions drops a journal key like a path, and
// the checkpoint deletes it from the state db.
func TestCursorForget(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	r.e.Advance(sources.Position{Path: sshKey, Cursor: cur1})
	r.e.Advance(sources.Position{Path: "journal:CONTAINER_NAME=web", Cursor: cur2})
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	gone := r.e.ForgetPositions(func(p string) bool { return strings.Contains(p, "CONTAINER_NAME") })
	if !slices.Equal(gone, []string{"journal:CONTAINER_NAME=web"}) {
		t.Errorf("forgot %v", gone)
	}
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.Close()
	r.open()
	want := []sources.Position{{Path: sshKey, Cursor: cur1}}
	if got := r.e.Positions(); !slices.Equal(got, want) {
		t.Errorf("after reopen Positions = %+v, want %+v", got, want)
	}
}

// TestCursorCrashReplay: after kill -9 (the db copied while the engine
// holds it), the cursor saved is the one of the last checkpoint, together
// with the windows of that instant: resuming after it counts each failure
// once.
func TestCursorCrashReplay(t *testing.T) {
	A := "203.0.113.1"
	r := newRig(t, jailCfg("sshd")) // maxretry 3
	curs := []string{cur1, cur2, cur3}
	for i := range 2 {
		r.fail("sshd", A, t0.Add(time.Duration(i)*time.Second), sources.Position{Path: sshKey, Cursor: curs[i]})
	}
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := r.crashed()
	if got, want := r2.e.Positions(), []sources.Position{{Path: sshKey, Cursor: cur2}}; !slices.Equal(got, want) {
		t.Fatalf("after crash Positions = %+v, want %+v", got, want)
	}
	// The entry after cur2 is the third failure: it bans.
	if b := r2.fail("sshd", A, t0.Add(2*time.Second), sources.Position{Path: sshKey, Cursor: cur3}); b == nil {
		t.Errorf("the third failure after the resume did not ban")
	}
}

// TestCursorOldDatabase: a state db written before the cursors bucket
// existed opens, its file positions intact; a damaged cursor record is
// skipped and logged, not fatal.
func TestCursorOldDatabase(t *testing.T) {
	r := newRig(t, jailCfg("sshd"))
	file := sources.Position{Path: "/var/log/auth.log", Inode: 3, Offset: 40}
	r.e.Advance(file)
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.Close()
	db, err := bolt.Open(filepath.Join(r.dir, "moat.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bktCursors) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r.open()
	if got := r.e.Positions(); !slices.Equal(got, []sources.Position{file}) {
		t.Fatalf("old db Positions = %+v", got)
	}
	r.e.Advance(sources.Position{Path: sshKey, Cursor: cur1})
	if err := r.e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r.e.Close()

	db, err = bolt.Open(filepath.Join(r.dir, "moat.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bktCursors).Put([]byte("journal:bad"), []byte{99, 'x'})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	r.open()
	want := []sources.Position{file, {Path: sshKey, Cursor: cur1}}
	if got := r.e.Positions(); !slices.Equal(got, want) {
		t.Errorf("Positions = %+v, want %+v", got, want)
	}
	if !strings.Contains(r.logs.String(), "journal:bad") {
		t.Errorf("the damaged cursor record was not logged: %s", r.logs.String())
	}
}
