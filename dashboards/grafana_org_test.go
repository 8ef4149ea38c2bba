package dashboards

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"github.com/lcpipe/lcpipe/internal/analysts"
	"github.com/lcpipe/lcpipe/internal/secret"
)

const testPassword = "s3cret-Pa55word-that-must-stay-in-one-file"

func testOrgOptions() GrafanaOrgOptions {
	d := DefaultGrafanaOptions()
	return GrafanaOrgOptions{Host: d.Host, Port: d.Port, Database: d.Database, Mount: "/etc/lcpipe/grafana", Password: secret.Secret(testPassword)}
}

// orgDatasourceFile is the part of a datasource provisioning file the
// tests read.
type orgDatasourceFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string `yaml:"name"`
		OrgID     int    `yaml:"orgId"`
		Type      string `yaml:"type"`
		UID       string `yaml:"uid"`
		IsDefault bool   `yaml:"isDefault"`
		JSONData  struct {
			Host            string `yaml:"host"`
			Port            int    `yaml:"port"`
			Secure          bool   `yaml:"secure"`
			Username        string `yaml:"username"`
			DefaultDatabase string `yaml:"defaultDatabase"`
		} `yaml:"jsonData"`
		SecureJSONData map[string]string `yaml:"secureJsonData"`
	} `yaml:"datasources"`
	DeleteDatasources []struct {
		Name  string `yaml:"name"`
		OrgID int    `yaml:"orgId"`
	} `yaml:"deleteDatasources"`
}

type providerFile struct {
	Providers []struct {
		Name    string `yaml:"name"`
		OrgID   int    `yaml:"orgId"`
		Type    string `yaml:"type"`
		Options struct {
			Path string `yaml:"path"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

// TestGrafanaOrgFiles checks one organization's files field by field: the
// datasource is in its Grafana organization, signs in as its scoped user
// with the password only in the 0600 secrets file (read through
// $__file{} at the mounted path), the provider reads its dashboards, and
// every panel and variable of every dashboard (Pipeline health left out)
// reads that datasource with the organization fixed.
func TestGrafanaOrgFiles(t *testing.T) {
	for _, tc := range []struct {
		name, org  string
		grafanaOrg int
		secure     bool
	}{
		{"uuid", "390e44e6-f1e6-4c3c-86db-74a14508c2e1", 2, false},
		{"other org, TLS", "b6f3c7d2-0000-4c3c-86db-74a14508c2e1", 17, true},
		{"quote in id", "o'brien", 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOrgOptions()
			o.Secure = tc.secure
			files, err := GrafanaOrgFiles(tc.org, tc.grafanaOrg, o)
			if err != nil {
				t.Fatal(err)
			}
			uid, user := GrafanaOrgDatasourceUID(tc.org), analysts.UserName(tc.org)
			if !strings.HasPrefix(uid, "lcpipe-ch-") || len(uid) > 40 {
				t.Errorf("datasource uid %q", uid)
			}
			byPath := map[string]GrafanaFile{}
			for _, f := range files {
				byPath[f.Path] = f
				if strings.Contains(string(f.Data), testPassword) != strings.HasPrefix(f.Path, "secrets/") {
					t.Errorf("%s: the password must be in the secrets file and nowhere else", f.Path)
				}
				wantMode := fs.FileMode(0o644)
				if strings.HasPrefix(f.Path, "secrets/") {
					wantMode = 0o600
				}
				if f.Mode != wantMode {
					t.Errorf("%s: mode %v, want %v", f.Path, f.Mode, wantMode)
				}
			}
			secretFile := byPath["secrets/"+user]
			if string(secretFile.Data) != testPassword {
				t.Errorf("secrets/%s holds %q", user, secretFile.Data)
			}

			var ds orgDatasourceFile
			dsPath := "provisioning/datasources/lcpipe-org-" + orgKey(tc.org) + ".yaml"
			if err := yaml.Unmarshal(byPath[dsPath].Data, &ds); err != nil || len(ds.Datasources) != 1 {
				t.Fatalf("%s: %v, %d datasources", dsPath, err, len(ds.Datasources))
			}
			d := ds.Datasources[0]
			if d.OrgID != tc.grafanaOrg || d.UID != uid || d.Type != PluginID || d.IsDefault {
				t.Errorf("datasource orgId %d uid %q type %q default %v, want %d %q %q false", d.OrgID, d.UID, d.Type, d.IsDefault, tc.grafanaOrg, uid, PluginID)
			}
			if d.JSONData.Username != user || d.JSONData.Host != o.Host || d.JSONData.Port != o.Port || d.JSONData.DefaultDatabase != o.Database || d.JSONData.Secure != tc.secure {
				t.Errorf("datasource connection %+v", d.JSONData)
			}
			if want := "$__file{/etc/lcpipe/grafana/secrets/" + user + "}"; len(d.SecureJSONData) != 1 || d.SecureJSONData["password"] != want {
				t.Errorf("secureJsonData %v, want password %s", d.SecureJSONData, want)
			}
			if owner, err := parseOwner(byPath[dsPath].Data); err != nil || owner != tc.org {
				t.Errorf("datasource file names organization %q (%v), want %q", owner, err, tc.org)
			}

			var pv providerFile
			pvPath := "provisioning/dashboards/lcpipe-org-" + orgKey(tc.org) + ".yaml"
			if err := yaml.Unmarshal(byPath[pvPath].Data, &pv); err != nil || len(pv.Providers) != 1 {
				t.Fatalf("%s: %v", pvPath, err)
			}
			dashDir := "dashboards/org-" + orgKey(tc.org)
			if p := pv.Providers[0]; p.OrgID != tc.grafanaOrg || p.Type != "file" || p.Options.Path != "/etc/lcpipe/grafana/"+dashDir {
				t.Errorf("provider %+v", p)
			}

			var got []string
			for _, f := range files {
				if !strings.HasPrefix(f.Path, dashDir+"/") {
					continue
				}
				got = append(got, strings.TrimSuffix(strings.TrimPrefix(f.Path, dashDir+"/"), ".json"))
				checkOrgDashboard(t, f, tc.org, uid)
			}
			if want := []string{"lc-overview", "lc-agents", "lc-groups-tags"}; !slices.Equal(got, want) {
				t.Errorf("dashboards %v, want %v (no Pipeline health: operators only)", got, want)
			}
			if len(files) != 3+len(got) {
				t.Errorf("%d files, want datasource, provider, secret and the dashboards", len(files))
			}
		})
	}
}

// checkOrgDashboard: every panel, target and ClickHouse variable reads
// the organization's datasource; the org variable is a hidden constant.
func checkOrgDashboard(t *testing.T, f GrafanaFile, org, uid string) {
	t.Helper()
	type ds struct{ Type, UID string }
	var dash struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Query      any    `json:"query"`
				Hide       int    `json:"hide"`
				Datasource *ds    `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string `json:"title"`
			Datasource ds     `json:"datasource"`
			Targets    []struct {
				Datasource ds `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(f.Data, &dash); err != nil {
		t.Fatalf("%s: %v", f.Path, err)
	}
	if len(dash.Panels) == 0 {
		t.Errorf("%s: no panels", f.Path)
	}
	for _, p := range dash.Panels {
		if p.Datasource.UID != uid || p.Datasource.Type != PluginID {
			t.Errorf("%s/%s: datasource %+v, want %s", f.Path, p.Title, p.Datasource, uid)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != uid {
				t.Errorf("%s/%s: target datasource %+v, want %s", f.Path, p.Title, tg.Datasource, uid)
			}
		}
	}
	for _, v := range dash.Templating.List {
		switch {
		case v.Name == "org":
			if v.Type != "constant" || v.Query != org || v.Hide != 2 {
				t.Errorf("%s: org variable %+v, want a hidden constant %q", f.Path, v, org)
			}
		case v.Datasource == nil || v.Datasource.UID != uid:
			t.Errorf("%s: variable %s reads %+v, want %s", f.Path, v.Name, v.Datasource, uid)
		}
	}
}

// parseOwner reads the organization back the way GrafanaOrgOwner does.
func parseOwner(b []byte) (string, error) {
	dir, err := os.MkdirTemp("", "owner")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "provisioning", "datasources", "lcpipe-org-x.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", err
	}
	var ds orgDatasourceFile
	if err := yaml.Unmarshal(b, &ds); err != nil || len(ds.Datasources) == 0 {
		return "", err
	}
	return GrafanaOrgOwner(dir, ds.Datasources[0].OrgID)
}

func TestGrafanaOrgFilesRefuses(t *testing.T) {
	ok := testOrgOptions()
	for _, tc := range []struct {
		name       string
		org        string
		grafanaOrg int
		edit       func(*GrafanaOrgOptions)
		want       string
	}{
		{"main Grafana organization", "o", 1, nil, "organization 1 holds the shared dashboards"},
		{"no organization", "", 2, nil, "organization id"},
		{"relative mount", "o", 2, func(o *GrafanaOrgOptions) { o.Mount = "grafana" }, "absolute"},
		{"mount breaking $__file", "o", 2, func(o *GrafanaOrgOptions) { o.Mount = "/etc/g}x" }, "mount"},
		{"host breaking YAML", "o", 2, func(o *GrafanaOrgOptions) { o.Host = "h\n  evil: 1" }, "host"},
		{"no password", "o", 2, func(o *GrafanaOrgOptions) { o.Password = "" }, "password"},
		{"password Grafana would expand", "o", 2, func(o *GrafanaOrgOptions) { o.Password = "a$HOME" }, "$"},
		{"password Grafana would trim", "o", 2, func(o *GrafanaOrgOptions) { o.Password = "pw\n" }, "spaces"},
		{"bad port", "o", 2, func(o *GrafanaOrgOptions) { o.Port = 0 }, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			if tc.edit != nil {
				tc.edit(&o)
			}
			if _, err := GrafanaOrgFiles(tc.org, tc.grafanaOrg, o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestWriteRemoveGrafanaOrg writes two organizations, checks the modes on
// disk, that a third cannot take a Grafana organization already used,
// then removes one: its secret, provider and dashboards are gone, its
// datasource file only deletes the datasource, and the other's files are
// byte for byte what they were.
func TestWriteRemoveGrafanaOrg(t *testing.T) {
	dir := t.TempDir()
	a, b := "390e44e6-f1e6-4c3c-86db-74a14508c2e1", "b6f3c7d2-0000-4c3c-86db-74a14508c2e1"
	o := testOrgOptions()
	for i, org := range []string{a, b} {
		if err := WriteGrafanaOrg(dir, org, 2+i, o); err != nil {
			t.Fatal(err)
		}
	}
	// Rewriting (a new password) replaces the files in place.
	o.Password = "rotated-password-0123456789"
	if err := WriteGrafanaOrg(dir, a, 2, o); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "secrets", analysts.UserName(a))); string(got) != "rotated-password-0123456789" {
		t.Errorf("secret after rotation: %q", got)
	}
	modes := map[string]fs.FileMode{}
	before := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		modes[filepath.ToSlash(rel)] = info.Mode().Perm()
		if !d.IsDir() {
			before[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, m := range modes {
		want := fs.FileMode(0o644)
		switch {
		case p == "secrets":
			want = 0o700
		case strings.HasPrefix(p, "secrets/"):
			want = 0o600
		case !strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".json"):
			want = 0o755
		}
		if m != want {
			t.Errorf("%s: mode %v, want %v", p, m, want)
		}
		if strings.HasPrefix(filepath.Base(p), ".") {
			t.Errorf("%s: temporary file left behind", p)
		}
	}
	if err := WriteGrafanaOrg(dir, "c-org", 3, o); err == nil || !strings.Contains(err.Error(), b) {
		t.Errorf("a second organization in Grafana organization 3: %v, want a refusal naming %s", err, b)
	}

	if err := RemoveGrafanaOrg(dir, a, 2); err != nil {
		t.Fatal(err)
	}
	for p, data := range before {
		got, err := os.ReadFile(filepath.Join(dir, p))
		switch {
		case p == orgDatasourcePath(a):
			var ds orgDatasourceFile
			if err := yaml.Unmarshal(got, &ds); err != nil || len(ds.Datasources) != 0 || len(ds.DeleteDatasources) != 1 ||
				ds.DeleteDatasources[0].OrgID != 2 || ds.DeleteDatasources[0].Name != orgDatasourceName {
				t.Errorf("%s after remove: %v\n%s", p, err, got)
			}
		case strings.Contains(p, orgKey(a)) || strings.HasSuffix(p, analysts.UserName(a)):
			if err == nil {
				t.Errorf("%s still exists after remove", p)
			}
		case err != nil || string(got) != string(data):
			t.Errorf("%s of the other organization changed by remove: %v", p, err)
		}
	}
	// Grafana organization 2 is free again; removing twice is fine.
	if owner, err := GrafanaOrgOwner(dir, 2); err != nil || owner != "" {
		t.Errorf("owner of Grafana organization 2 after remove: %q %v", owner, err)
	}
	if err := RemoveGrafanaOrg(dir, a, 2); err != nil {
		t.Errorf("remove again: %v", err)
	}
	if err := RemoveGrafanaOrg(dir, "never-added", 9); err != nil {
		t.Errorf("remove of an organization without files: %v", err)
	}
}
