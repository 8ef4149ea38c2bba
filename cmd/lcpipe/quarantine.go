package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/progress"
	"github.com/lcpipe/lcpipe/ops"
)

const quarantineSummary = "webhooks ingest acknowledged but Kafka refused (SPOOL_DIR/dead): list | redrive [--dry-run] to Kafka"

// runQuarantine is the operators' tool for one ingest's quarantine folder
// (run it on the ingest's host, with its SPOOL_DIR):
//
//	lcpipe quarantine list [--json]
//	lcpipe quarantine redrive [--dry-run] [--json]
func runQuarantine(ctx context.Context, inv *invocation) error {
	sub := ""
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		sub, inv.args = inv.args[0], inv.args[1:]
	}
	kcfg := inv.Kafka()
	spoolDir := inv.String("SPOOL_DIR", ingest.DefaultConfig().Spool.Dir, "ingest's spool folder; the quarantine is its dead/ subfolder")
	asJSON := inv.fs.Bool("json", false, "print JSON")
	dry := inv.fs.Bool("dry-run", false, "redrive: list what would be sent, send and remove nothing")
	if err := inv.parse(); err != nil {
		return err
	}
	if sub == "" && inv.fs.NArg() > 0 {
		sub = inv.fs.Arg(0)
	}
	q := ingest.NewQuarantine(filepath.Join(spoolDir, "dead"))
	w := inv.stdout
	switch sub {
	case "list":
		list, err := ops.ListQuarantine(q)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(w, list)
		}
		printQuarantine(w, list)
		var n int64
		for _, f := range list {
			n += f.Bytes
		}
		fmt.Fprintf(w, "%d quarantined webhook(s), %d bytes, in %s\n", len(list), n, q.Dir())
		return nil
	case "redrive":
		cl, err := kafka.NewClient(kcfg)
		if err != nil {
			return err
		}
		defer cl.Close()
		files, err := q.List()
		if err != nil {
			return err
		}
		var bar *progress.Bar
		if len(files) >= 100 {
			bar = progress.New(os.Stderr, int64(len(files)), "redriving quarantine")
		}
		res, err := ops.RedriveQuarantine(ctx, cl, q, kcfg.RawTopic, *dry, bar)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := writeJSON(w, res); err != nil {
				return err
			}
		} else {
			verb := "sent to " + kcfg.RawTopic + " and removed"
			if res.DryRun {
				verb = "would be sent (dry run)"
			}
			printQuarantine(w, res.Left)
			fmt.Fprintf(w, "%d %s, %d left in %s\n", len(res.Sent), verb, len(res.Left), q.Dir())
		}
		if len(res.Left) > 0 {
			return fmt.Errorf("%d quarantined webhook(s) could not be sent (see above); fix the cause and run again", len(res.Left))
		}
		return nil
	default:
		return fmt.Errorf("unknown or missing action %q: use `lcpipe quarantine list|redrive`", sub)
	}
}

func printQuarantine(w io.Writer, list []ops.Quarantined) {
	if len(list) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tAGE\tBYTES\tACTION\tREQUEST ID\tERROR")
	for _, f := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", filepath.Base(f.Path), secs(f.AgeSec), f.Bytes, orDash(f.Action), orDash(f.RequestID), orDash(f.Error))
	}
	tw.Flush()
}
