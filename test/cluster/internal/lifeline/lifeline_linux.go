// Package lifeline ties a server process to the test process that started it: when the harness
// dies without cleaning up (SIGKILL, an OOM kill, a crashed runner), the kernel kills the server
// too, so no etcd or kube-apiserver outlives a test run.
package lifeline

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Tie asks for SIGKILL when the parent exits, if the harness asked for it with
// SPOT_CLUSTER_PARENT_PID (its own pid). A parent that is already gone ends this process now:
// the signal is only sent on a death that happens after the request.
func Tie() {
	want := os.Getenv("SPOT_CLUSTER_PARENT_PID")
	if want == "" {
		return
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "lifeline: prctl(PR_SET_PDEATHSIG): %v\n", errno)
		os.Exit(1)
	}
	if strconv.Itoa(os.Getppid()) != want {
		fmt.Fprintln(os.Stderr, "lifeline: the process that started this one is gone; exiting")
		os.Exit(1)
	}
}
