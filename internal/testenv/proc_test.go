package testenv

import (
	"os"
	"strconv"
	"testing"
)

func TestProcOfSelf(t *testing.T) {
	for _, pid := range []string{"self", strconv.Itoa(os.Getpid())} {
		// Burn a little CPU so the count is above zero ticks.
		x := 0
		for i := range 50_000_000 {
			x += i
		}
		_ = x
		cpu, err := ProcCPU(pid)
		if err != nil || cpu <= 0 {
			t.Errorf("ProcCPU(%s) = %v, %v; want > 0", pid, cpu, err)
		}
		cur, peak, err := ProcRSS(pid)
		if err != nil || cur <= 0 || peak < cur {
			t.Errorf("ProcRSS(%s) = %d, %d, %v; want 0 < cur <= peak", pid, cur, peak, err)
		}
	}
	if _, err := ProcCPU("0"); err == nil {
		t.Error("ProcCPU of no process: want an error")
	}
	if _, _, err := ProcRSS("0"); err == nil {
		t.Error("ProcRSS of no process: want an error")
	}
}
