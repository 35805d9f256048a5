//go:build unix

package users

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an exclusive advisory lock on f without waiting; busy
// reports that another edit holds it. unsupported reports a file system
// that has no such locks for f (NFS emulates flock with byte-range locks,
// which a directory opened for reading cannot take).
func tryLock(f *os.File) (busy, unsupported bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return false, false, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, false, nil
	case errors.Is(err, syscall.EBADF), errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.EINVAL):
		return false, true, nil
	}
	return false, false, err
}
