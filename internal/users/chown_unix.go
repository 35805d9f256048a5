//go:build unix

package users

import (
	"os"
	"syscall"
)

// chownLike gives f the owner and group of the file described by like, when
// the process is allowed to (as root, or keeping its own ids); otherwise it
// does nothing.
func chownLike(f *os.File, like os.FileInfo) {
	if st, ok := like.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(st.Uid), int(st.Gid))
	}
}
