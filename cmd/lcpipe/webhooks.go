package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/lcapp"
)

// webhooksSummary is the command's one-line help (for commands()).
const webhooksSummary = "list|register|unregister the app's LiveChat webhooks for an organization (--organization ID)"

// runWebhooks is the operators' tool for the app's webhook registrations,
// using the organization's stored (and, when needed, refreshed) token:
//
//	lcpipe webhooks list --organization ID        what LiveChat holds, and which are ours
//	lcpipe webhooks register --organization ID    reconcile: one per action, then enable
//	lcpipe webhooks unregister --organization ID  remove ours and forget the secret
func runWebhooks(ctx context.Context, inv *invocation) error {
	sub := ""
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		sub, inv.args = inv.args[0], inv.args[1:]
	}
	org := inv.fs.String("organization", "", "LiveChat organization ID (UUID) whose stored token is used")
	cfg, configured := appEnv(inv)
	if err := inv.parse(); err != nil {
		return err
	}
	if sub == "" && inv.fs.NArg() > 0 {
		sub = inv.fs.Arg(0)
	}
	switch sub {
	case "list", "register", "unregister":
	default:
		return fmt.Errorf("unknown or missing action %q: use `lcpipe webhooks list|register|unregister --organization ID`", sub)
	}
	if *org == "" {
		return errors.New("--organization is required (the organization ID shown on the settings page)")
	}
	if !configured {
		return errors.New("the LiveChat app is not configured: set LIVECHAT_CLIENT_ID, LIVECHAT_CLIENT_SECRET, PUBLIC_BASE_URL and APP_ENCRYPTION_KEY as for ingest")
	}
	app, err := lcapp.New(cfg, inv.log.With("component", "lcapp"))
	if err != nil {
		return err
	}
	defer app.Close()
	w := inv.stdout
	switch sub {
	case "list":
		hooks, ours, err := app.Webhooks(ctx, *org)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tACTION\tTYPE\tOURS\tURL")
		for _, h := range hooks {
			mine := "no"
			if ours[h.ID] {
				mine = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.ID, h.Action, h.Type, mine, h.URL)
		}
		tw.Flush()
		enabled, err := app.LicenseWebhooksEnabled(ctx, *org)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%d registrations; license webhooks enabled for %s: %v\n", len(hooks), *org, enabled)
	case "register":
		res, err := app.Reconcile(ctx, *org)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "registered %d, already present %d, removed %d duplicates/stale; license webhooks re-enabled: %v\n",
			len(res.Registered), len(res.Kept), len(res.Removed), res.Enabled)
		if res.Registration != "" {
			return fmt.Errorf("registration skipped: %s", res.Registration)
		}
	case "unregister":
		removed, err := app.Unregister(ctx, *org)
		fmt.Fprintf(w, "unregistered %d webhooks\n", len(removed))
		if err != nil {
			return err
		}
	}
	return nil
}
