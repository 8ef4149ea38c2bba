package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/analysts"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// On the local 18.16 server `lcpipe analysts add` fails and says why and
// what works instead; missing arguments are named.
func TestAnalystsCommand(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	t.Setenv("CLICKHOUSE_ADDR", strings.Join(cfg.Addr, ","))
	t.Setenv("CLICKHOUSE_DATABASE", cfg.Database)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"analysts", "add"}, "--organization is required"},
		{[]string{"analysts", "grant", "--organization", "o"}, "unknown or missing action"},
		{[]string{"analysts", "add", "--organization", "390e44e6-f1e6-0368c-z6ddb-74g14508c2ex"}, "20.4"},
	} {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("lcpipe %v: exit %d, stderr %s, want it to mention %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// The --grafana-* flags are checked before ClickHouse is touched: a
// folder without a Grafana organization, Grafana's main organization, a
// Grafana organization another organization's files already use, or
// Grafana flags on list are refused with the reason; on 18.16, where the
// user cannot be made, no Grafana file is written.
func TestAnalystsGrafanaFlags(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	t.Setenv("CLICKHOUSE_ADDR", strings.Join(cfg.Addr, ","))
	t.Setenv("CLICKHOUSE_DATABASE", cfg.Database)
	dir := t.TempDir()
	taken := t.TempDir()
	other := "b6f3c7d2-0000-4c3c-86db-74a14508c2e1"
	if err := dashboards.WriteGrafanaOrg(taken, other, 2, dashboards.GrafanaOrgOptions{Host: "clickhouse", Port: 9000, Database: "livechat", Mount: "/g", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	org := "390e44e6-f1e6-4c3c-86db-74a14508c2e1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--organization", org, "--grafana-dir", dir}, "--grafana-dir needs --grafana-org-id"},
		{[]string{"remove", "--organization", org, "--grafana-dir", dir}, "--grafana-dir needs --grafana-org-id"},
		{[]string{"add", "--organization", org, "--grafana-org-id", "2"}, "need --grafana-dir"},
		{[]string{"add", "--organization", org, "--grafana-dir", dir, "--grafana-org-id", "1"}, "organization 1 holds the shared dashboards"},
		{[]string{"add", "--organization", org, "--grafana-dir", dir, "--grafana-org-id", "2", "--grafana-mount", "rel"}, "not an absolute path"},
		{[]string{"add", "--organization", org, "--grafana-dir", dir, "--grafana-org-id", "2", "--grafana-clickhouse", "clickhouse"}, "want host:port"},
		{[]string{"add", "--organization", org, "--grafana-dir", taken, "--grafana-org-id", "2"}, "already shows organization " + other},
		{[]string{"list", "--grafana-dir", dir}, "not list"},
		// Past the Grafana checks: the local server refuses the user.
		{[]string{"add", "--organization", org, "--grafana-dir", dir, "--grafana-org-id", "2"}, "20.4"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"analysts"}, tc.args...), &out, &errb); code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("lcpipe analysts %v: exit %d, stderr %s, want it to mention %q", tc.args, code, errb.String(), tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("Grafana files written although no user was made: %v", entries)
	}
}

// TestAnalystsGrafanaOptions: what add writes for Grafana follows the
// command's ClickHouse settings (database, TLS) and flags (address as
// Grafana reaches it; mount, by default the folder itself), and those
// files name the organization's user and datasource.
func TestAnalystsGrafanaOptions(t *testing.T) {
	dir := t.TempDir()
	abs, _ := filepath.Abs(dir)
	cfg := chconn.DefaultConfig()
	cfg.Database = "lc_prod"
	for _, tc := range []struct {
		name string
		g    grafanaFlags
		tls  bool
		want dashboards.GrafanaOrgOptions
	}{
		{"compose", grafanaFlags{dir: dir, orgID: 2, mount: composeGrafanaMount, clickhouse: "clickhouse:9000"}, false,
			dashboards.GrafanaOrgOptions{Host: "clickhouse", Port: 9000, Database: "lc_prod", Mount: composeGrafanaMount}},
		{"same host, TLS", grafanaFlags{dir: dir, orgID: 5, clickhouse: "abc.clickhouse.cloud:9440"}, true,
			dashboards.GrafanaOrgOptions{Host: "abc.clickhouse.cloud", Port: 9440, Database: "lc_prod", Secure: true, Mount: abs}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.TLS.Enabled = tc.tls
			got, err := tc.g.options("add", "org-1", c)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("options %+v, want %+v", got, tc.want)
			}
			got.Password = analysts.NewPassword() // what add writes: nothing Grafana would expand
			if err := dashboards.WriteGrafanaOrg(dir, "org-1", tc.g.orgID, got); err != nil {
				t.Fatal(err)
			}
			ds, _ := filepath.Glob(filepath.Join(dir, "provisioning", "datasources", "*.yaml"))
			b, _ := os.ReadFile(ds[0])
			for _, want := range []string{"username: " + analysts.UserName("org-1"), "uid: " + dashboards.GrafanaOrgDatasourceUID("org-1"),
				"$__file{" + tc.want.Mount + "/secrets/" + analysts.UserName("org-1") + "}", fmt.Sprintf("orgId: %d", tc.g.orgID)} {
				if !strings.Contains(string(b), want) {
					t.Errorf("datasource file lacks %q:\n%s", want, b)
				}
			}
			if err := dashboards.RemoveGrafanaOrg(dir, "org-1", tc.g.orgID); err != nil {
				t.Fatal(err)
			}
			_ = os.RemoveAll(filepath.Join(dir, "provisioning"))
		})
	}
}
