package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Crash kills the instance with SIGKILL, as Kill does, and makes sure the
// next Start really starts it again. Kill returns once the process is gone
// or a zombie; a zombie nobody has reaped yet (the process is not our
// child: services.sh detached it) still passes services.sh's `kill -0`
// liveness check, so Start would take it for running and do nothing. The
// PID file is removed instead: Start then finds the ports free (a zombie
// holds no sockets) and starts a new process.
// Without a PID file (nothing started, or a start that failed early)
// there is nothing to kill.
func (in *Instance) Crash() {
	in.t.Helper()
	pidFile := filepath.Join(in.runDir, in.service+".pid")
	if _, err := os.Stat(pidFile); err != nil {
		return
	}
	in.Kill()
	_ = os.Remove(pidFile)
}

// TryStart starts the instance (again) like Start but returns the error
// instead of failing the test, so a caller that restarts services from its
// own goroutines (chaos tests) can log it and try again: on a loaded
// machine a restart can outlast services.sh's 60 s wait.
func (in *Instance) TryStart() error {
	cmd := exec.Command("bash", filepath.Join(RepoRoot(in.t), "scripts", "services.sh"), "up", in.service)
	cmd.Env = append(os.Environ(), in.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: services.sh up %s: %w\n%s", in.service, err, out)
	}
	return nil
}
