package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

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
func runAnalysts(ctx context.Context, inv *invocation) error {
	sub := ""
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		sub, inv.args = inv.args[0], inv.args[1:]
	}
	org := inv.fs.String("organization", "", "LiveChat organization ID (UUID) whose rows the user sees")
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
	default:
		return fmt.Errorf("unknown or missing action %q: use `lcpipe analysts add|remove|list [--organization ID]`", sub)
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
	case "remove":
		if err := analysts.Remove(ctx, conn, o, *org); err != nil {
			return err
		}
		fmt.Fprintf(w, "removed %s (organization %s)\n", analysts.UserName(*org), *org)
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
