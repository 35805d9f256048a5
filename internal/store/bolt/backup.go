package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the store file to w while the store
// stays in use: one read transaction, so writers go on and the copy is the
// file as it was when the backup began. start is called once, before the
// first byte, with the copy's size in bytes, and returns the writer.
func (db *DB) Backup(ctx context.Context, start func(size int64) io.Writer) (int64, error) {
	if err := db.check(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := db.bdb.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(start(tx.Size()))
		return err
	})
	if err != nil {
		return n, fmt.Errorf("bolt: backup of %s: %w", db.path, err)
	}
	return n, nil
}

// compactTxSize is how many bytes Compact copies per write transaction.
const compactTxSize = 64 << 20

// Compact writes the store file at src to a new file at dst without the
// free pages a store file keeps after records are deleted (the file never
// shrinks by itself). It returns both files' sizes. src must not be open
// elsewhere (stop Caddy first, or compact a backup), must be a store file
// of this format, and is only read; dst must not exist, and is removed
// again if compacting fails.
func Compact(src, dst string) (before, after int64, err error) {
	defer recoverDamaged(src, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	fi, err := os.Stat(src)
	if err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %w", err)
	}
	in, err := bbolt.Open(src, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return 0, 0, fmt.Errorf("bolt: compact: %s is in use (stop Caddy first, or compact a backup of it)", src)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %s is not a store file: %w", src, err)
	}
	defer in.Close()
	if err := in.View(checkFormat); err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %s: %w", src, err)
	}
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %w", err)
	}
	f.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(dst)
		}
	}()
	out, err := bbolt.Open(dst, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %w", err)
	}
	if err := bbolt.Compact(out, in, compactTxSize); err != nil {
		out.Close()
		return 0, 0, fmt.Errorf("bolt: compact %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %w", err)
	}
	fo, err := os.Stat(dst)
	if err != nil {
		return 0, 0, fmt.Errorf("bolt: compact: %w", err)
	}
	ok = true
	return fi.Size(), fo.Size(), nil
}

// checkFormat reports whether tx is a store file of this format.
func checkFormat(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return errors.New("not a twostep store file (no meta bucket)")
	}
	if v := meta.Get(keyVersion); len(v) != 1 || v[0] != formatVersion {
		return fmt.Errorf("unsupported store format version %v (this build reads %d)", v, formatVersion)
	}
	for _, name := range [][]byte{bucketSessions, bucketUserSessions, bucketKV, bucketExpiry} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("not a twostep store file (no %s bucket)", name)
		}
	}
	return nil
}

// Check reports whether the file at path is a whole store file of this
// format: it opens read-only, is as long as its meta page says, has the
// buckets, and every record reads back. A backup is checked so before it
// is kept.
func Check(path string) (err error) {
	defer recoverDamaged(path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // a page past the end of a cut-off file
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("bolt: %w", err)
	}
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("bolt: %s is not a store file: %w", path, err)
	}
	defer b.Close()
	return b.View(func(tx *bbolt.Tx) error {
		if fi.Size() < tx.Size() {
			return fmt.Errorf("bolt: %s is cut off: %d of %d bytes", path, fi.Size(), tx.Size())
		}
		if err := checkFormat(tx); err != nil {
			return fmt.Errorf("bolt: %s: %w", path, err)
		}
		// Reading every record reads every page that holds one (bbolt
		// checks each page it reads, panicking on a damaged one).
		return tx.ForEach(func(_ []byte, bk *bbolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error { return nil })
		})
	})
}

// recoverDamaged turns bbolt's panic on a damaged page (it asserts rather
// than returning an error) into an error naming the file.
func recoverDamaged(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("bolt: %s is damaged: %v", path, r)
	}
}
