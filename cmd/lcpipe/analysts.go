package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/analysts"
	"github.com/lcpipe/lcpipe/internal/chconn"
)

// analystsSummary is the command's one-line help (for commands()).
const analystsSummary = "add|remove|list organization-scoped read-only ClickHouse users (--organization ID; ClickHouse 20.4+)"

// runAnalysts manages the read-only ClickHouse users that see one
// organization's rows only (package analysts), as the ClickHouse user of
// CLICKHOUSE_USER (it needs access management):
//
//	lcpipe analysts add --organization ID      create (or re-create, new password) and print the credentials once
//	lcpipe analysts remove --organization ID   drop the user and its row policies
//	lcpipe analysts list                       the scoped users and their tables
//
// With --grafana-dir DIR --grafana-org-id N, add also writes the
// organization's Grafana provisioning files under DIR (dashboards package,
// GrafanaOrgFiles) and remove removes them: Grafana organization N then
// shows that organization's dashboards only.
func runAnalysts(ctx context.Context, inv *invocation) error {
	sub := ""
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		sub, inv.args = inv.args[0], inv.args[1:]
	}
	org := inv.fs.String("organization", "", "LiveChat organization ID (UUID) whose rows the user sees")
	var g grafanaFlags
	inv.fs.StringVar(&g.dir, "grafana-dir", "", "add/remove also write/remove the organization's Grafana provisioning files under this folder (docker-compose.yml: ./.grafana, prepared by make compose-env); needs --grafana-org-id")
	inv.fs.IntVar(&g.orgID, "grafana-org-id", 0, "Grafana organization (2 or more, created in Grafana first) that shows the organization's dashboards")
	inv.fs.StringVar(&g.mount, "grafana-mount", "", "absolute path at which Grafana sees --grafana-dir (default: --grafana-dir itself; docker-compose.yml: "+composeGrafanaMount+")")
	inv.fs.StringVar(&g.clickhouse, "grafana-clickhouse", "clickhouse:9000", "ClickHouse native address as Grafana reaches it (TLS when CLICKHOUSE_TLS is on; the default is docker-compose.yml's)")
	cfg := inv.ClickHouse()
	if err := inv.parse(); err != nil {
		return err
	}
	if sub == "" && inv.fs.NArg() > 0 {
		sub = inv.fs.Arg(0)
	}
	switch sub {
	case "add", "remove":
		if *org == "" {
			return errors.New("--organization is required")
		}
	case "list":
		if g.set() {
			return errors.New("--grafana-* flags go with add or remove, not list")
		}
	default:
		return fmt.Errorf("unknown or missing action %q: use `lcpipe analysts add|remove|list [--organization ID]`", sub)
	}
	// Grafana's side is checked before ClickHouse is touched, so a mistake
	// in it does not leave a user without its Grafana files.
	var gopts dashboards.GrafanaOrgOptions
	if g.set() {
		var err error
		if gopts, err = g.options(sub, *org, cfg); err != nil {
			return err
		}
	}
	conn, err := chconn.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	o := analysts.Options{Database: cfg.Database, Cluster: cfg.Cluster}
	w := inv.stdout
	switch sub {
	case "add":
		pw := analysts.NewPassword()
		u, err := analysts.Add(ctx, conn, o, *org, pw)
		if err != nil {
			return err
		}
		inv.log.Info("organization-scoped analyst user ready", "organization_id", *org, "user", u.Name, "tables", len(u.Tables))
		// The password is shown here once, never logged; add again to rotate it.
		fmt.Fprintf(w, "user      %s\npassword  %s\ndatabase  %s\nsees      organization %s only, read-only (%s)\n",
			u.Name, pw.Reveal(), cfg.Database, *org, strings.Join(u.Tables, ", "))
		// After the credentials are shown: a failed write then loses nothing.
		if g.set() {
			gopts.Password = pw
			if err := dashboards.WriteGrafanaOrg(g.dir, *org, g.orgID, gopts); err != nil {
				return err
			}
			inv.log.Info("organization's Grafana files written", "organization_id", *org, "dir", g.dir, "grafana_org_id", g.orgID)
			fmt.Fprintf(w, "grafana   organization %d, datasource %s, files in %s (restart Grafana, or POST /api/admin/provisioning/datasources/reload and .../dashboards/reload)\n",
				g.orgID, dashboards.GrafanaOrgDatasourceUID(*org), g.dir)
		}
	case "remove":
		if err := analysts.Remove(ctx, conn, o, *org); err != nil {
			return err
		}
		fmt.Fprintf(w, "removed %s (organization %s)\n", analysts.UserName(*org), *org)
		if g.set() {
			if err := dashboards.RemoveGrafanaOrg(g.dir, *org, g.orgID); err != nil {
				return err
			}
			fmt.Fprintf(w, "removed its Grafana files from %s (the datasource leaves Grafana organization %d at its next start or provisioning reload)\n", g.dir, g.orgID)
		}
	case "list":
		users, err := analysts.List(ctx, conn, o)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ORGANIZATION\tUSER\tTABLES")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Organization, u.Name, strings.Join(u.Tables, ","))
		}
		return tw.Flush()
	}
	return nil
}

// composeGrafanaMount is where docker-compose.yml's Grafana sees ./.grafana.
const composeGrafanaMount = "/etc/lcpipe/grafana"

// grafanaFlags are the --grafana-* flags of add and remove.
type grafanaFlags struct {
	dir, mount, clickhouse string
	orgID                  int
}

func (g grafanaFlags) set() bool { return g.dir != "" || g.orgID != 0 || g.mount != "" }

// options checks the flags and returns the files' options (without the
// password, which add makes later); for add it also checks the files can
// be made, and that the Grafana organization shows no other organization.
func (g grafanaFlags) options(sub, org string, cfg chconn.Config) (dashboards.GrafanaOrgOptions, error) {
	var o dashboards.GrafanaOrgOptions
	switch {
	case g.dir == "":
		return o, errors.New("--grafana-org-id and --grafana-mount need --grafana-dir: the folder the Grafana files are written to")
	case g.orgID == 0:
		return o, errors.New("--grafana-dir needs --grafana-org-id: the Grafana organization (2 or more, created in Grafana first) that shows this organization's dashboards; " +
			"without it they would land in Grafana's main organization, beside the shared dashboards that show every organization")
	}
	if sub == "remove" {
		return o, nil
	}
	host, port, err := net.SplitHostPort(g.clickhouse)
	if err != nil {
		return o, fmt.Errorf("--grafana-clickhouse %q: want host:port: %w", g.clickhouse, err)
	}
	// Grafana reads the same database over the same kind of connection as
	// this command, under the name it knows the server by.
	o.Host, o.Secure, o.Database = host, cfg.TLS.Enabled, cfg.Database
	if o.Port, err = strconv.Atoi(port); err != nil {
		return o, fmt.Errorf("--grafana-clickhouse %q: port: %w", g.clickhouse, err)
	}
	o.Mount = g.mount
	if o.Mount == "" {
		if o.Mount, err = filepath.Abs(g.dir); err != nil {
			return o, fmt.Errorf("--grafana-dir %q: %w", g.dir, err)
		}
	}
	check := o
	check.Password = "check"
	if _, err := dashboards.GrafanaOrgFiles(org, g.orgID, check); err != nil {
		return o, err
	}
	if owner, err := dashboards.GrafanaOrgOwner(g.dir, g.orgID); err != nil {
		return o, err
	} else if owner != "" && owner != org {
		return o, fmt.Errorf("--grafana-org-id %d: that Grafana organization already shows organization %s: give each organization a Grafana organization of its own", g.orgID, owner)
	}
	return o, nil
}
