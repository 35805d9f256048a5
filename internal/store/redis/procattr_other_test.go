//go:build !linux

package redis

import (
	"errors"
	"syscall"
)

// childProcAttr is the default elsewhere: TestMain stops the servers.
func childProcAttr() *syscall.SysProcAttr { return nil }

// errNoFreeze skips the frozen-server part of TestServerFailure.
var errNoFreeze = errors.New("freezing a process is only implemented on Linux")

func freeze(int, bool) error { return errNoFreeze }
