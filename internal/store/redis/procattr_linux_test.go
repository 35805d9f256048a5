package redis

import "syscall"

// childProcAttr makes the servers the tests start die with the test binary,
// even if it is killed (a test timeout, ^C).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// freeze stops (SIGSTOP) or, with thaw, continues (SIGCONT) process pid.
func freeze(pid int, thaw bool) error {
	if thaw {
		return syscall.Kill(pid, syscall.SIGCONT)
	}
	return syscall.Kill(pid, syscall.SIGSTOP)
}
