package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestComposeGrafanaPerOrganization checks statically (no Docker here)
// that the compose Grafana loads what `lcpipe analysts add --grafana-dir
// .grafana --grafana-mount /etc/lcpipe/grafana` writes: it mounts
// ./.grafana read-only at that path; its provisioning folder is inside it
// and holds the shared files exactly as generated; every path the
// per-organization files name (password file, dashboards folder) is, seen
// through the mounts, the file the command writes; the secrets folder is
// its owner's only and Grafana runs as that owner; and the exposure check
// finds no password in those files.
func TestComposeGrafanaPerOrganization(t *testing.T) {
	envFile := composeEnv(t)
	env, err := dotenv.Read(envFile)
	if err != nil {
		t.Fatal(err)
	}
	p := loadComposeFile(t, "docker-compose.yml", envFile, true)
	g := p.Services["grafana"]
	root := testenv.RepoRoot(t)
	dir := filepath.Join(root, ".grafana")

	mounted := false
	for _, v := range g.Volumes {
		if v.Target == composeGrafanaMount {
			mounted = v.Source == dir && v.ReadOnly
		}
	}
	if !mounted {
		t.Fatalf("grafana must mount %s read-only at %s (the --grafana-mount of the README): %+v", dir, composeGrafanaMount, g.Volumes)
	}
	provisioning, ok := hostPath(g, grafanaProvisioning(g))
	if rel, err := filepath.Rel(dir, provisioning); !ok || err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("Grafana's provisioning (%s) is %s, not inside %s: per-organization files would not load", grafanaProvisioning(g), provisioning, dir)
	}
	shared, err := dashboards.GrafanaFiles(dashboards.DefaultGrafanaOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range shared {
		rel, ok := strings.CutPrefix(name, "provisioning/")
		if !ok {
			continue
		}
		if got, err := os.ReadFile(filepath.Join(provisioning, rel)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not the shared file compose-env.sh copies (%v)", filepath.Join(provisioning, rel), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "secrets")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf(".grafana/secrets: %v %v, want a folder of mode 700", fi, err)
	}
	if want := fmt.Sprintf("%d:0", os.Getuid()); g.User != want || env["GRAFANA_UID"] != fmt.Sprint(os.Getuid()) {
		t.Errorf("grafana runs as %q (GRAFANA_UID=%q), want %s: the owner of the 0600 secrets", g.User, env["GRAFANA_UID"], want)
	}

	// The files of one organization, written where the command would
	// write them (a copy of the tree, not the repository's).
	org := "390e44e6-f1e6-4c3c-86db-74a14508c2e1"
	files, err := dashboards.GrafanaOrgFiles(org, 2, dashboards.GrafanaOrgOptions{Host: "clickhouse", Port: 9000, Database: "livechat",
		Mount: composeGrafanaMount, Password: "pw-only-in-the-secret-file"})
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	var provisioned []dashboards.GrafanaFile
	for _, f := range files {
		written[filepath.Join(dir, filepath.FromSlash(f.Path))] = true
		if strings.HasPrefix(f.Path, "provisioning/") {
			provisioned = append(provisioned, f)
			if host := filepath.Join(dir, filepath.FromSlash(f.Path)); filepath.Dir(filepath.Dir(host)) != provisioning {
				t.Errorf("%s is written to %s, outside Grafana's provisioning %s", f.Path, host, provisioning)
			}
		}
	}
	containerPath := regexp.MustCompile(`(?m)(?:\$__file\{([^}]+)\}|^\s+path: (\S+))`)
	refs := 0
	for _, f := range provisioned {
		for _, m := range containerPath.FindAllStringSubmatch(string(f.Data), -1) {
			cp := m[1] + m[2]
			refs++
			host, ok := hostPath(g, cp)
			if !ok {
				t.Errorf("%s names %s, which no grafana mount shows", f.Path, cp)
				continue
			}
			if strings.HasPrefix(m[0], "$__file") && !written[host] {
				t.Errorf("%s reads %s = %s on the host, which the command does not write", f.Path, cp, host)
			}
			if !strings.HasPrefix(m[0], "$__file") && !written[filepath.Join(host, "lc-overview.json")] {
				t.Errorf("%s reads dashboards from %s = %s on the host, where the command writes none", f.Path, cp, host)
			}
		}
	}
	if refs != 2 {
		t.Errorf("found %d container paths in the per-organization provisioning, want 2 (password file, dashboards folder)", refs)
	}

	copyDir := t.TempDir()
	if err := dashboards.WriteGrafanaOrg(copyDir, org, 2, dashboards.GrafanaOrgOptions{Host: "clickhouse", Port: 9000, Database: "livechat",
		Mount: composeGrafanaMount, Password: "pw-only-in-the-secret-file"}); err != nil {
		t.Fatal(err)
	}
	if got := mountedPasswords(t, "grafana", copyDir); len(got) > 0 {
		t.Errorf("the exposure check finds passwords in the per-organization files: %v", got)
	}
	err = filepath.WalkDir(copyDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Dir(filepath.ToSlash(p)) == filepath.ToSlash(filepath.Join(copyDir, "secrets")) {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("pw-only-in-the-secret-file")) {
			t.Errorf("%s holds the password", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
