package testenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ (CLK_TCK), 100 on every Linux the
// project runs on: /proc counts CPU time in these ticks.
const clockTick = 10 * time.Millisecond

// ProcCPU is a process's user+system CPU time so far, from /proc/<pid>/stat
// (fields 14 and 15, counted after the parenthesised command, which may
// hold spaces). pid "self" is the calling process. Benchmarks report CPU
// per event from it: on a shared machine it is the figure noise disturbs
// least.
func ProcCPU(pid string) (time.Duration, error) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("testenv: cpu of %s: %w", pid, err)
	}
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields[0] is field 3 (state): utime is field 14, stime 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("testenv: cpu of %s: short stat %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("testenv: cpu of %s: parse %q", pid, s)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// ProcRSS is a process's resident set now (VmRSS) and at its peak (VmHWM),
// in KiB, from /proc/<pid>/status.
func ProcRSS(pid string) (cur, peak int64, err error) {
	raw, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("testenv: rss of %s: %w", pid, err)
	}
	var seen bool
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			cur, err = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			peak, err = strconv.ParseInt(f[1], 10, 64)
			seen = true
		default:
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("testenv: rss of %s: parse %q", pid, line)
		}
	}
	if !seen {
		return 0, 0, fmt.Errorf("testenv: rss of %s: no VmHWM", pid)
	}
	return cur, peak, nil
}
