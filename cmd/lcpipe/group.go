package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/ops"
	"github.com/lcpipe/lcpipe/processor"
)

const groupSummary = "reset the processors' consumer group: group reset --to earliest|latest|TIME [--dry-run] [--force]"

// runGroup moves the live consumer group's committed offsets (see
// ops.ResetGroup): `lcpipe group reset --to earliest|latest|TIME`.
func runGroup(ctx context.Context, inv *invocation) error {
	sub := ""
	if len(inv.args) > 0 && !strings.HasPrefix(inv.args[0], "-") {
		sub, inv.args = inv.args[0], inv.args[1:]
	}
	kcfg := inv.Kafka()
	group := inv.String("KAFKA_GROUP", processor.DefaultConfig().Group, "consumer group of the processors")
	to := inv.fs.String("to", "", "earliest, latest, or a time (RFC 3339, YYYY-MM-DD[ HH:MM] UTC, Unix ms, or 2h for two hours ago)")
	force := inv.fs.Bool("force", false, "reset even though the group lists active members (only useful when they are gone)")
	dry := inv.fs.Bool("dry-run", false, "print the new offsets, commit nothing")
	asJSON := inv.fs.Bool("json", false, "print JSON")
	if err := inv.parse(); err != nil {
		return err
	}
	if sub == "" && inv.fs.NArg() > 0 {
		sub = inv.fs.Arg(0)
	}
	if sub != "reset" {
		return fmt.Errorf("unknown or missing action %q: use `lcpipe group reset --to earliest|latest|TIME`", sub)
	}
	if *to == "" {
		return errors.New("--to is required: earliest, latest or a time")
	}
	cl, err := kafka.NewClient(kcfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := ops.ResetGroup(ctx, cl, ops.GroupResetOptions{Group: group, Topic: kcfg.RawTopic, To: *to, Force: *force, DryRun: *dry})
	if err != nil {
		return err
	}
	w := inv.stdout
	if *asJSON {
		return writeJSON(w, res)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PARTITION\tCOMMITTED\tNEW\tMOVE\t")
	for _, p := range res.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%+d\t\n", p.Partition, p.From, p.To, p.Records)
	}
	tw.Flush()
	if res.DryRun {
		fmt.Fprintf(w, "dry run: group %s not changed\n", group)
	} else {
		fmt.Fprintf(w, "group %s reset to %s on %s\n", group, *to, kcfg.RawTopic)
	}
	return nil
}
