package testenv

import (
	"os"
	"path/filepath"
)

// Crash kills the instance with SIGKILL, as Kill does, and makes sure the
// next Start really starts it again. Kill returns once the process is gone
// or a zombie; a zombie nobody has reaped yet (the process is not our
// child: services.sh detached it) still passes services.sh's `kill -0`
// liveness check, so Start would take it for running and do nothing. The
// PID file is removed instead: Start then finds the ports free (a zombie
// holds no sockets) and starts a new process.
func (in *Instance) Crash() {
	in.t.Helper()
	in.Kill()
	_ = os.Remove(filepath.Join(in.runDir, in.service+".pid"))
}
