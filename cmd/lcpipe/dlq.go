package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/progress"
	"github.com/lcpipe/lcpipe/ops"
)

const dlqSummary = "dead letters: list | show PARTITION:OFFSET | redrive [--dry-run] [--reason TEXT] through the processor again"

// runDLQ is the operators' tool for the dead-letter topic:
//
//	lcpipe dlq list [--reason TEXT] [--stage STAGE] [--json]
//	lcpipe dlq show PARTITION:OFFSET [--json]
//	lcpipe dlq redrive [--dry-run] [--reason TEXT] [--stage STAGE] [--all] [--include-redriven] [--json]
func runDLQ(ctx context.Context, inv *invocation) error {
	sub := ""
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		sub, inv.args = inv.args[0], inv.args[1:]
	}
	kcfg := inv.Kafka()
	asJSON := inv.fs.Bool("json", false, "print JSON")
	reason := inv.fs.String("reason", "", "only dead letters whose error contains this text (case-insensitive)")
	stage := inv.fs.String("stage", "", "only dead letters of this stage (decode-envelope, decode-payload, validate, ingest)")
	dry := inv.fs.Bool("dry-run", false, "redrive: list what would be sent, send nothing")
	all := inv.fs.Bool("all", false, "redrive: send dead letters that were redriven before too")
	again := inv.fs.Bool("include-redriven", false, "redrive: also send dead letters that already failed after a redrive")
	if err := inv.parse(); err != nil {
		return err
	}
	args := inv.fs.Args()
	if sub == "" && len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	filter := ops.DLQFilter{Reason: *reason, Stage: *stage}
	bar := func(total int64) *progress.Bar {
		if total < 1000 {
			return nil
		}
		return progress.New(os.Stderr, total, "reading dead letters")
	}
	switch sub {
	case "list", "show", "redrive":
	default:
		return fmt.Errorf("unknown or missing action %q: use `lcpipe dlq list|show|redrive`", sub)
	}
	cl, err := kafka.NewClient(kcfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	w := inv.stdout
	switch sub {
	case "list":
		dls, err := ops.ListDeadLettersWithNotices(ctx, cl, kcfg.DLQTopic, filter, bar)
		if err != nil {
			return err
		}
		if *asJSON {
			if dls == nil {
				dls = []ops.DeadLetter{}
			}
			return writeJSON(w, dls)
		}
		printDeadLetters(w, dls)
		fmt.Fprintf(w, "%d dead letter(s) in %s\n", len(dls), kcfg.DLQTopic)
		return nil
	case "show":
		if len(args) != 1 {
			return errors.New("show needs the dead letter's PARTITION:OFFSET (see `lcpipe dlq list`)")
		}
		part, off, err := parsePartOffset(args[0])
		if err != nil {
			return err
		}
		d, err := ops.ShowDeadLetter(ctx, cl, kcfg.DLQTopic, part, off)
		if err != nil {
			return err
		}
		return showDeadLetter(w, d, *asJSON)
	default:
		res, err := ops.DLQRedrive(ctx, cl, ops.RedriveOptions{
			DLQTopic: kcfg.DLQTopic, RawTopic: kcfg.RawTopic, All: *all,
			Filter: filter, IncludeRedriven: *again, DryRun: *dry, Bar: bar,
		})
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(w, res)
		}
		printDeadLetters(w, res.Sent)
		verb := "sent to " + kcfg.RawTopic
		if res.DryRun {
			verb = "would be sent to " + kcfg.RawTopic + " (dry run)"
		}
		fmt.Fprintf(w, "%d examined, %d %s; skipped: %d redriven before (--all), %d failed after a redrive (--include-redriven), %d without a body (quarantined by ingest: lcpipe quarantine redrive)\n",
			res.Examined, len(res.Sent), verb, res.SkippedDone, res.SkippedRedriven, res.SkippedNoBody)
		return nil
	}
}

func printDeadLetters(w io.Writer, dls []ops.DeadLetter) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ P:O\tAGE\tSTAGE\tSOURCE P:O\tACTION\tREDRIVEN TO\tFAILED AFTER REDRIVE OF\tREASON")
	for _, d := range dls {
		reason := d.Reason
		if len(reason) > 100 {
			reason = reason[:100] + "…"
		}
		fmt.Fprintf(tw, "%d:%d\t%s\t%s\t%d:%d\t%s\t%s\t%s\t%s\n", d.Partition, d.Offset, secs(d.AgeSec), d.Stage,
			d.SourcePartition, d.SourceOffset, orDash(d.Action), orDash(d.RedrivenTo), orDash(d.Redriven), reason)
	}
	tw.Flush()
}

func showDeadLetter(w io.Writer, d *ops.DeadLetter, asJSON bool) error {
	r := d.Record()
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Key] = string(h.Value)
	}
	if asJSON {
		return writeJSON(w, map[string]any{"dead_letter": d, "key": string(r.Key), "headers": headers, "body": string(r.Value)})
	}
	fmt.Fprintf(w, "dead letter %s (%s ago)\nstage:   %s\nreason:  %s\nsource:  %s partition %d offset %d\nkey:     %s\n",
		d.ID(), secs(d.AgeSec), d.Stage, d.Reason, d.SourceTopic, d.SourcePartition, d.SourceOffset, r.Key)
	fmt.Fprintln(w, "headers:")
	for _, h := range r.Headers {
		fmt.Fprintf(w, "  %s: %s\n", h.Key, h.Value)
	}
	fmt.Fprintf(w, "body (%d bytes):\n", len(r.Value))
	var buf bytes.Buffer
	if json.Indent(&buf, r.Value, "", "  ") == nil {
		buf.WriteByte('\n')
		_, err := buf.WriteTo(w)
		return err
	}
	_, err := fmt.Fprintf(w, "%q\n", r.Value)
	return err
}

// parsePartOffset parses "PARTITION:OFFSET".
func parsePartOffset(s string) (int32, int64, error) {
	ps, os, ok := strings.Cut(strings.TrimSpace(s), ":")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
		return 0, 0, fmt.Errorf("%q is not PARTITION:OFFSET (e.g. 2:1534)", s)
	}
	return int32(p), o, nil
}
