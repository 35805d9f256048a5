package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/twostep-auth/twostep/internal/store"
)

// A backup taken while the store is written to is the store as of its
// start: it opens as a store, holds every record written before, and the
// writes during it went on.
func TestBackupWhileInUse(t *testing.T) {
	db := openTest(t)
	base := time.Now()
	bulkSessions(t, db, "before", 2000, func(int) *store.Session { return testSession(base, "alice", time.Hour) })
	if err := db.Put(bg, "k:1", []byte("v1"), 0, base); err != nil {
		t.Fatal(err)
	}
	var size int64 = -1
	var buf bytes.Buffer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	writes := 0
	go func() { // a writer during the backup
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := testSession(base, "bob", time.Hour)
			s.ID = fmt.Sprintf("during-%d", i)
			if err := db.PutSession(bg, s); err != nil {
				t.Error(err)
				return
			}
			writes++
		}
	}()
	n, err := db.Backup(bg, func(sz int64) io.Writer {
		size = sz
		time.Sleep(50 * time.Millisecond) // the writer goes on meanwhile
		return &buf
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n != size || int64(buf.Len()) != size {
		t.Fatalf("backup wrote %d bytes (buffer %d), announced %d", n, buf.Len(), size)
	}
	if writes == 0 {
		t.Fatal("no write went through during the backup")
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("the backup does not open as a store: %v", err)
	}
	defer cp.Close()
	list, err := cp.ListUserSessions(bg, "alice", base)
	if err != nil || len(list) != 2000 {
		t.Fatalf("the backup holds %d of alice's 2000 sessions (%v)", len(list), err)
	}
	if v, err := cp.Get(bg, "k:1", base); err != nil || string(v) != "v1" {
		t.Fatalf("the backup's k:1 = %q, %v", v, err)
	}
	checkConsistency(t, cp)
	// The original has everything written during the backup too.
	if list, err := db.ListUserSessions(bg, "bob", base); err != nil || len(list) != writes {
		t.Fatalf("the store holds %d of the %d sessions written during the backup (%v)", len(list), writes, err)
	}
}

func TestBackupClosed(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.Backup(bg, func(int64) io.Writer { return io.Discard }); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("backup of a closed store: %v, want ErrClosed", err)
	}
}

// Compact gives back the space of deleted records, keeps every live one,
// and leaves the source file as it was.
func TestCompact(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "twostep.db")
	db, err := Open(src, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	bulkSessions(t, db, "gone", 20000, func(int) *store.Session { return testSession(base, "alice", time.Hour) })
	bulkSessions(t, db, "kept", 100, func(int) *store.Session { return testSession(base, "bob", time.Hour) })
	if _, err := db.DeleteUserSessions(bg, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(bg, "k:1", []byte("v1"), 0, base); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "compact.db")
	before, after, err := Compact(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if before != int64(len(orig)) || after <= 0 || after*4 > before {
		t.Fatalf("compacted %d → %d bytes; want less than a quarter", before, after)
	}
	if now, _ := os.ReadFile(src); !bytes.Equal(now, orig) {
		t.Fatal("Compact changed its source file")
	}
	cp, err := Open(dst, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if list, err := cp.ListUserSessions(bg, "bob", base); err != nil || len(list) != 100 {
		t.Fatalf("the compacted store holds %d of bob's 100 sessions (%v)", len(list), err)
	}
	if list, _ := cp.ListUserSessions(bg, "alice", base); len(list) != 0 {
		t.Fatalf("deleted sessions came back: %d", len(list))
	}
	if v, err := cp.Get(bg, "k:1", base); err != nil || string(v) != "v1" {
		t.Fatalf("k:1 = %q, %v", v, err)
	}
	checkConsistency(t, cp)
}

func TestCompactRefuses(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "twostep.db")
	db, err := Open(src, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	// In use.
	if _, _, err := Compact(src, filepath.Join(dir, "a.db")); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("compacting a file in use: %v", err)
	}
	db.Close()
	// The destination exists: it is left alone.
	exists := filepath.Join(dir, "exists.db")
	if err := os.WriteFile(exists, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Compact(src, exists); err == nil {
		t.Fatal("Compact overwrote an existing file")
	}
	if b, _ := os.ReadFile(exists); string(b) != "mine" {
		t.Fatalf("the existing destination was changed: %q", b)
	}
	// Not a store file: a text file, and a bolt file of something else.
	text := filepath.Join(dir, "text")
	if err := os.WriteFile(text, []byte(strings.Repeat("not bolt ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	ob, err := bbolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	ob.Close()
	for _, in := range []string{text, other, filepath.Join(dir, "missing")} {
		out := filepath.Join(dir, "out-"+filepath.Base(in))
		if _, _, err := Compact(in, out); err == nil {
			t.Errorf("compacting %s succeeded", filepath.Base(in))
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a failed compaction of %s left %s", filepath.Base(in), out)
		}
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	db, err := Open(good, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	bulkSessions(t, db, "s", 500, func(int) *store.Session { return testSession(time.Now(), "alice", time.Hour) })
	db.Close()
	if err := Check(good); err != nil {
		t.Fatalf("a good store file: %v", err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// The file runs on past its last page (bbolt grows it in steps);
	// what follows damages the pages in use.
	raw = raw[:usedSize(t, good)]
	// Cut off (a backup that stopped half-way), and one page overwritten.
	cut := filepath.Join(dir, "cut.db")
	if err := os.WriteFile(cut, raw[:len(raw)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	// The records' pages (the second half of a file filled in order),
	// overwritten; the meta pages and the file's size stay as they were.
	bad := bytes.Clone(raw)
	for i := len(bad) / 2; i < len(bad); i++ {
		bad[i] = 0xff
	}
	damaged := filepath.Join(dir, "damaged.db")
	if err := os.WriteFile(damaged, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{cut, "cut off"},
		{damaged, "damaged"},
		{filepath.Join(dir, "missing.db"), "no such file"},
	} {
		if err := Check(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%s) = %v, want an error saying %q", filepath.Base(c.path), err, c.want)
		}
	}
	// Compact refuses a damaged file too, without a panic.
	if _, _, err := Compact(damaged, filepath.Join(dir, "c.db")); err == nil {
		t.Error("compacting a damaged file succeeded")
	}
}

// A backup that stalls (a slow link to the admin endpoint) holds its read
// transaction; writes that make the file grow well past its size must go
// on meanwhile, not wait for the copy: bbolt remaps a growing file only
// when no read transaction is open, so the store maps ahead.
func TestBackupDoesNotBlockGrowth(t *testing.T) {
	if mapAhead == 0 {
		t.Skip("this platform maps the file at its size")
	}
	db := openTest(t)
	base := time.Now()
	started := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := db.Backup(bg, func(int64) io.Writer {
			close(started)
			<-release // the reader of the copy is slow
			return io.Discard
		})
		done <- err
	}()
	<-started
	fi, err := os.Stat(db.path)
	if err != nil {
		t.Fatal(err)
	}
	// 64 MiB of records, in 64 KiB values: the file grows through many of
	// bbolt's remap steps (it doubles its map from 32 KiB).
	wrote := make(chan error, 1)
	go func() {
		val := bytes.Repeat([]byte{'x'}, 64<<10)
		for i := 0; i < 1024; i++ {
			if err := db.Put(bg, fmt.Sprintf("grow:%d", i), val, 0, base); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		close(release)
		<-done
		t.Fatal("writes that grow the file waited for the stalled backup")
	}
	after, err := os.Stat(db.path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() < fi.Size()+32<<20 {
		t.Fatalf("the file grew from %d to %d bytes only; the test did not grow it", fi.Size(), after.Size())
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// usedSize is how much of the store file at path its pages use.
func usedSize(t *testing.T, path string) int64 {
	t.Helper()
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var n int64
	if err := b.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
