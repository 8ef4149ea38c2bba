package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/audit"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/processor"
)

const auditSummary = "prove a range was stored completely and once: audit --from TIME --to TIME [--organization ID] (exit 1 on any gap, duplicate or derived-table mismatch)"

// errAuditFailed is returned after the report when the audit found gaps,
// duplicates or mismatches.
var errAuditFailed = errors.New("audit found problems (see above)")

// runAudit accounts for every raw record of a range (package audit).
func runAudit(ctx context.Context, inv *invocation) error {
	kcfg := inv.Kafka()
	chcfg := inv.ClickHouse()
	window := inv.Duration("DEDUP_WINDOW", processor.DefaultConfig().DedupWindow, "must be the processors' value: retries of state changes are recognised within it")
	from := inv.fs.String("from", "", "start: a time (RFC 3339, YYYY-MM-DD[ HH:MM] UTC, Unix ms, 2h = two hours ago), earliest, or PARTITION:OFFSET,... (required)")
	to := inv.fs.String("to", "", "end (exclusive): a time, latest, or PARTITION:OFFSET,... (required)")
	org := inv.fs.String("organization", "", "audit only this organization's webhooks")
	asJSON := inv.fs.Bool("json", false, "print the report as JSON")
	if err := inv.parse(); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return errors.New("--from and --to are required (e.g. --from 2026-11-27 --to 2026-11-28, or --from earliest --to latest)")
	}
	cl, err := kafka.NewClient(kcfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := audit.Run(ctx, cl, audit.Options{
		RawTopic: kcfg.RawTopic, DLQTopic: kcfg.DLQTopic, From: *from, To: *to, Organization: *org,
		ClickHouse: conn, Database: chcfg.Database, DedupWindow: window, Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(inv.stdout, rep); err != nil {
			return err
		}
	} else {
		printAudit(inv.stdout, rep)
	}
	if !rep.OK() {
		return errAuditFailed
	}
	return nil
}

func printAudit(w io.Writer, r *audit.Report) {
	fmt.Fprintf(w, "audit of %s against %s, offsets %v..%v (%s)\n", r.Topic, r.Database, r.Start, r.End, r.Took)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ACTION\tRECORDS\tSTORED\tRETRIES\tDEAD-LETTERED\tGAPS\t")
	for _, a := range r.SortedActions() {
		c := r.Actions[a]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", orDash(a), c.Records, c.Stored, c.Retries, c.DeadLettered, c.Gaps)
	}
	c := r.Total
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", c.Records, c.Stored, c.Retries, c.DeadLettered, c.Gaps)
	tw.Flush()
	fmt.Fprintln(w, "(records and dead-lettered count raw records; stored, retries and gaps count events)")
	fmt.Fprintf(w, "derived tables checked (keys): %v\n", r.DerivedChecked)
	fmt.Fprintf(w, "%d gap(s), %d duplicate(s), %d derived-table mismatch(es)\n", r.Total.Gaps, len(r.Duplicates), len(r.Mismatches))
	for _, g := range r.Gaps {
		fmt.Fprintf(w, "GAP %d:%d#%d %s %s %s: %s\n", g.Partition, g.Offset, g.Index, g.Action, g.Kind, orDash(g.EventID), g.Reason)
	}
	for _, d := range r.Duplicates {
		fmt.Fprintf(w, "DUPLICATE %s stored %d times\n", d.EventID, d.Count)
	}
	for _, m := range r.Mismatches {
		fmt.Fprintf(w, "MISMATCH %s %s: %d in events, %d in %s\n", m.Table, m.Key, m.Events, m.Table2, m.Table)
	}
}
