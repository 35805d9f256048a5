//go:build !linux

package redis

import "syscall"

// childProcAttr is the default elsewhere: TestMain stops the servers.
func childProcAttr() *syscall.SysProcAttr { return nil }
