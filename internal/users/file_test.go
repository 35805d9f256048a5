package users

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// usersYAML returns a users file with the given users, all with
// fixtureArgonHash unless name=hash is given.
func usersYAML(entries ...string) string {
	var b strings.Builder
	b.WriteString("users:\n")
	for _, e := range entries {
		name, hash, ok := strings.Cut(e, "=")
		if !ok {
			hash = fixtureArgonHash
		}
		fmt.Fprintf(&b, "  %s:\n    password: %q\n", name, hash)
	}
	return b.String()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile puts content at path in one step (a rename), so that a
// reader sees the old file or the new one, never a half-written one.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".new"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually waits, up to a few seconds, for cond to hold.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func has(f *File, name string) bool {
	_, ok := f.DB().Lookup(name)
	return ok
}

// watch opens path and watches it; notify false means polling only, every
// few milliseconds; with notify, polling is effectively off so that the
// notifications are what is tested.
func watch(t testing.TB, path string, notify bool, log *zap.Logger) *File {
	t.Helper()
	f, err := Open(path, log)
	if err != nil {
		t.Fatal(err)
	}
	if notify {
		f.poll = time.Hour
		f.settle = 10 * time.Millisecond
	} else {
		f.noNotify = true
		f.poll = 10 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Watch(ctx)
	t.Cleanup(func() {
		cancel()
		f.Close()
	})
	return f
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	writeFile(t, bad, "users:\n  bob:\n    password: hunter2\n")
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing.yml"), "no such file"},
		{"invalid", bad, bad + `: user "bob": password: not an argon2id or bcrypt hash`},
		{"directory", dir, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Open(tt.path, nil)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestReloadKeepsLastGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	writeFile(t, path, usersYAML("alice"))
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first := f.DB()

	tests := []struct {
		name    string
		content string // "" removes the file
		want    string
	}{
		{"syntax error", "users:\n  alice: [\n", "not valid YAML"},
		{"invalid entry", usersYAML("alice", "bob=plain"), `user "bob": password`},
		{"removed", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.content == "" {
				os.Remove(path)
			} else {
				writeFile(t, path, tt.content)
			}
			err := f.Reload()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Reload = %v, want an error containing %q", err, tt.want)
			}
			if f.DB() != first {
				t.Error("the last good copy was replaced")
			}
		})
	}

	writeFile(t, path, usersYAML("alice", "bob"))
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if !has(f, "bob") {
		t.Error("a good file after bad ones was not loaded")
	}
}

func TestOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	writeFile(t, path, usersYAML("alice", "bob"))
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type change struct{ old, new *DB }
	var changes []change
	f.OnChange(func(old, new *DB) { changes = append(changes, change{old, new}) })

	before := f.DB()
	// Same content: no change.
	if err := f.Reload(); err != nil || len(changes) != 0 {
		t.Fatalf("Reload of the same content: err %v, %d callbacks", err, len(changes))
	}
	writeFile(t, path, usersYAML("alice="+fixtureBcryptHash, "bob"))
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].old != before || changes[0].new != f.DB() {
		t.Fatalf("callbacks: %+v", changes)
	}
	oldA, _ := changes[0].old.Lookup("alice")
	newA, _ := changes[0].new.Lookup("alice")
	oldB, _ := changes[0].old.Lookup("bob")
	newB, _ := changes[0].new.Lookup("bob")
	if oldA.Credential == newA.Credential {
		t.Error("alice's password changed but her Credential did not")
	}
	if oldB.Credential != newB.Credential {
		t.Error("bob's password did not change but his Credential did")
	}
	// A bad file calls nobody.
	writeFile(t, path, "nope: [")
	if f.Reload() == nil || len(changes) != 1 {
		t.Errorf("bad reload: %d callbacks", len(changes))
	}
}

func TestWatch(t *testing.T) {
	tests := []struct {
		name   string
		notify bool
		change func(t *testing.T, path string)
	}{
		{"write in place (notify)", true, func(t *testing.T, path string) {
			writeFile(t, path, usersYAML("alice", "dave"))
		}},
		{"write in place (poll)", false, func(t *testing.T, path string) {
			writeFile(t, path, usersYAML("alice", "dave"))
		}},
		{"rename over (notify)", true, func(t *testing.T, path string) {
			tmp := path + ".tmp"
			writeFile(t, tmp, usersYAML("alice", "dave"))
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"rename over (poll)", false, func(t *testing.T, path string) {
			tmp := filepath.Join(filepath.Dir(path), ".new")
			writeFile(t, tmp, usersYAML("alice", "dave"))
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"editor: remove then create (notify)", true, func(t *testing.T, path string) {
			os.Remove(path)
			writeFile(t, path, usersYAML("alice", "dave"))
		}},
		{"AddUser (notify)", true, func(t *testing.T, path string) {
			if err := AddUser(path, NewUser{Name: "dave", Hash: fixtureArgonHash}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yml")
			writeFile(t, path, usersYAML("alice"))
			f := watch(t, path, tt.notify, nil)
			var calls atomic.Int32
			f.OnChange(func(old, new *DB) { calls.Add(1) })
			tt.change(t, path)
			eventually(t, "dave to appear", func() bool { return has(f, "dave") })
			if !has(f, "alice") {
				t.Error("alice is gone")
			}
			// Callbacks run right after the new snapshot is published.
			eventually(t, "OnChange", func() bool { return calls.Load() > 0 })
		})
	}
}

// TestWatchSymlinkSwap is how Kubernetes updates a mounted ConfigMap: the
// file is a symlink through `..data`, itself a symlink that is atomically
// replaced.
func TestWatchSymlinkSwap(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprintf("notify=%v", notify), func(t *testing.T) {
			dir := t.TempDir()
			mustDo := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			mustDo(os.Mkdir(filepath.Join(dir, "..v1"), 0o755))
			writeFile(t, filepath.Join(dir, "..v1", "users.yml"), usersYAML("alice"))
			mustDo(os.Symlink("..v1", filepath.Join(dir, "..data")))
			mustDo(os.Symlink(filepath.Join("..data", "users.yml"), filepath.Join(dir, "users.yml")))

			f := watch(t, filepath.Join(dir, "users.yml"), notify, nil)

			mustDo(os.Mkdir(filepath.Join(dir, "..v2"), 0o755))
			writeFile(t, filepath.Join(dir, "..v2", "users.yml"), usersYAML("alice", "dave"))
			mustDo(os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
			mustDo(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
			mustDo(os.RemoveAll(filepath.Join(dir, "..v1")))

			eventually(t, "dave to appear", func() bool { return has(f, "dave") })
		})
	}
}

// The files are replaced whole (as editors and deploy tools do): written
// in place, the poller could read the file empty, between the truncation
// and the write, and log that instead of the error looked for.
func TestWatchBadFileKeepsLastGood(t *testing.T) {
	for _, notify := range []bool{true, false} {
		t.Run(fmt.Sprintf("notify=%v", notify), func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			path := filepath.Join(t.TempDir(), "users.yml")
			writeFile(t, path, usersYAML("alice"))
			f := watch(t, path, notify, zap.New(core))
			good := f.DB()

			replaceFile(t, path, usersYAML("alice", "dave")+"  eve:\n    password: \""+fixtureArgonHash+"\"\n    email: [\n")
			const msg = "users file is invalid; keeping the last good copy"
			eventually(t, "a warning", func() bool { return logs.FilterMessage(msg).Len() > 0 })
			if f.DB() != good {
				t.Error("the last good copy was replaced by a bad file")
			}
			entry := logs.FilterMessage(msg).All()[0]
			fields := entry.ContextMap()
			if fields["path"] != path {
				t.Errorf("path field = %v, want %s", fields["path"], path)
			}
			if e, _ := fields["error"].(string); !strings.Contains(e, "not valid YAML") {
				t.Errorf("error field = %q", e)
			}
			// The same bad content is not logged again.
			f.check()
			f.check()
			if n := logs.FilterMessage(msg).Len(); n != 1 {
				t.Errorf("logged %d times", n)
			}

			// An invalid entry: the log names the user and field, not the hash.
			replaceFile(t, path, usersYAML("alice", "mallory=$argon2id$v=19$m=65536,t=3,p=4$2ohUAfh9yetl+utr4tLcCQ$AsXx0Vlwjv"))
			eventually(t, "a second warning", func() bool { return logs.FilterMessage(msg).Len() > 1 })
			e, _ := logs.FilterMessage(msg).All()[1].ContextMap()["error"].(string)
			if !strings.Contains(e, `user "mallory": password:`) || strings.Contains(e, "2ohUAfh9yetl") {
				t.Errorf("error field = %q", e)
			}

			// Removed: logged once, last good copy kept.
			os.Remove(path)
			const gone = "cannot read users file; keeping the last good copy"
			eventually(t, "a warning about the missing file", func() bool { return logs.FilterMessage(gone).Len() > 0 })
			f.check()
			if n := logs.FilterMessage(gone).Len(); n != 1 {
				t.Errorf("missing file logged %d times", n)
			}

			// Back to good.
			replaceFile(t, path, usersYAML("alice", "frank"))
			eventually(t, "frank to appear", func() bool { return has(f, "frank") })
			for _, e := range logs.All() {
				for _, v := range e.ContextMap() {
					if s, ok := v.(string); ok && (strings.Contains(s, "2ohUAfh9yetl") || strings.Contains(s, "lOPl/kxx")) {
						t.Errorf("log %q has a password hash: %s", e.Message, s)
					}
				}
			}
		})
	}
}

func TestWatchStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	writeFile(t, path, usersYAML("alice"))
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Watch(ctx)
	f.Watch(ctx) // no second watcher
	cancel()
	done := make(chan struct{})
	go func() {
		f.Close()
		f.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the context ended")
	}
	f.Watch(context.Background()) // after Close: nothing
	if f.DB() == nil || !has(f, "alice") {
		t.Error("DB unusable after Close")
	}
}

// TestConcurrentReload reads snapshots while the file is reloaded; run with
// -race. Every snapshot must be one whole version of the file.
func TestConcurrentReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	versionA := usersYAML("a1", "a2", "a3")
	versionB := usersYAML("b1", "b2="+fixtureBcryptHash, "b3")
	writeFile(t, path, versionA)
	f := watch(t, path, true, nil)
	var changes atomic.Int32
	f.OnChange(func(old, new *DB) {
		if old == nil || new == nil || old == new {
			t.Error("bad OnChange arguments")
		}
		changes.Add(1)
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				db := f.DB()
				us := db.Users()
				if len(us) != 3 {
					t.Errorf("snapshot with %d users", len(us))
					return
				}
				prefix := us[0].Name[:1]
				for i, u := range us {
					if want := fmt.Sprintf("%s%d", prefix, i+1); u.Name != want {
						t.Errorf("mixed snapshot: %s where %s expected", u.Name, want)
						return
					}
					if got, ok := db.Lookup(strings.ToUpper(u.Name)); !ok || got != u {
						t.Errorf("Lookup(%s) inconsistent", u.Name)
						return
					}
				}
			}
		})
	}
	for i := range 40 {
		content := versionA
		if i%2 == 0 {
			content = versionB
		}
		tmp := path + ".tmp"
		writeFile(t, tmp, content)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		if err := f.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if changes.Load() < 40 {
		t.Errorf("%d changes seen, want at least 40", changes.Load())
	}
}
