package dashboards

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// chromium returns Debian's chromium, installing it with apt-get when missing.
func chromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Log("chromium not found: installing Debian's chromium with apt-get")
	cmd := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install chromium (needs root and the Debian mirror): %v\n%s", err, out)
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium still missing after apt-get: %v", err)
	}
	return p
}

// headless runs chromium once on url with a fresh profile and returns
// stdout and stderr.
func headless(t *testing.T, bin, url string, extra ...string) (string, string) {
	t.Helper()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--hide-scrollbars", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir(), "--window-size=1600,1900", "--virtual-time-budget=20000",
	}
	args = append(append(args, extra...), url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

var (
	statusRe  = regexp.MustCompile(`<output id="status"([^>]*)>`)
	attrRe    = regexp.MustCompile(`data-([a-z-]+)="([^"]*)"`)
	consoleRe = regexp.MustCompile(`(?m)^.*:CONSOLE[:(].*$`)
)

// TestBrowserDashboards loads every built-in dashboard in headless
// Chromium against ClickHouse filled with recent simulated traffic and
// checks that every panel rendered with data (charts drawn as SVG), that
// nothing was logged to the console, and saves a screenshot of each under
// dashboards/screenshots/ (git-ignored).
func TestBrowserDashboards(t *testing.T) {
	bin := chromium(t)
	db, _ := recentData(t)
	srv := newTestViewer(t, db)
	shots := filepath.Join(testenv.RepoRoot(t), "dashboards", "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range All() {
		t.Run(d.UID, func(t *testing.T) {
			url := srv.URL + "/?dashboard=" + d.UID + "&range=24h&refresh=0"
			dom, stderr := headless(t, bin, url, "--dump-dom")
			m := statusRe.FindStringSubmatch(dom)
			if m == nil {
				t.Fatalf("no status element in the DOM:\n%.2000s", dom)
			}
			attrs := map[string]string{}
			for _, a := range attrRe.FindAllStringSubmatch(m[1], -1) {
				attrs[a[1]] = a[2]
			}
			if attrs["state"] != "done" || attrs["errors"] != "" {
				t.Errorf("page state %q, errors %q", attrs["state"], attrs["errors"])
			}
			panels, _ := strconv.Atoi(attrs["panels"])
			withData, _ := strconv.Atoi(attrs["with-data"])
			if panels != len(d.Panels) || withData != panels {
				t.Errorf("%d of %d panels rendered with data (want all %d)", withData, panels, len(d.Panels))
			}
			charts := 0
			for _, p := range d.Panels {
				if p.Viz == Bar || p.Viz == TimeSeries {
					charts++
				}
			}
			if got := strings.Count(dom, `class="chart `); got != charts {
				t.Errorf("%d SVG charts drawn, want %d", got, charts)
			}
			if lines := consoleRe.FindAllString(stderr, -1); len(lines) > 0 {
				t.Errorf("console output:\n%s", strings.Join(lines, "\n"))
			}
			file := filepath.Join(shots, d.UID+".png")
			_ = os.Remove(file)
			headless(t, bin, url, "--screenshot="+file)
			if st, err := os.Stat(file); err != nil || st.Size() < 20_000 {
				t.Errorf("screenshot %s missing or nearly empty (%v)", file, err)
			}
		})
	}
}
