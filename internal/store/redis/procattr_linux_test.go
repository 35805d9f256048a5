package redis

import "syscall"

// childProcAttr makes the servers the tests start die with the test binary,
// even if it is killed (a test timeout, ^C).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
