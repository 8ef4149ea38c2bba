package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/replay"
	"github.com/lcpipe/lcpipe/schema"
)

const replaySummary = "read a range of the raw topic again and insert what is missing: replay --from TIME|P:O,... --to ... [--dry-run] [--rate N] [--database DB]"

// runReplay replays a range of the raw topic through the processor's code
// (package replay).
func runReplay(ctx context.Context, inv *invocation) error {
	kcfg := inv.Kafka()
	chcfg := inv.ClickHouse()
	d := processor.DefaultConfig()
	cfg := d
	group := inv.String("KAFKA_GROUP", d.Group, "consumer group of the live processors (a replay into their database stops at its committed offsets)")
	cfg.BatchRows = inv.Int("BATCH_ROWS", d.BatchRows, "rows per batch (as the processor)")
	cfg.BatchBytes = inv.Bytes("BATCH_BYTES", d.BatchBytes, "approximate memory per batch (as the processor)")
	cfg.BatchLinger = inv.Duration("BATCH_LINGER", d.BatchLinger, "longest a batch waits (as the processor)")
	cfg.InsertRows = inv.Int("INSERT_ROWS", d.InsertRows, "rows per ClickHouse INSERT; progress is saved after each")
	cfg.InsertLinger = inv.Duration("INSERT_LINGER", d.InsertLinger, "longest an INSERT stays open; progress is saved after each")
	cfg.DedupWindow = inv.Duration("DEDUP_WINDOW", d.DedupWindow, "must be the live processors' value, so the replay decides as they did")
	from := inv.fs.String("from", "earliest", "start: earliest, a time (RFC 3339, YYYY-MM-DD[ HH:MM] UTC, Unix ms, 2h = two hours ago) or PARTITION:OFFSET,...")
	to := inv.fs.String("to", "latest", "end (exclusive): latest (the log end when the replay first starts), a time, or PARTITION:OFFSET,...")
	dry := inv.fs.Bool("dry-run", false, "decide everything, insert nothing; print per action: records read, already stored, duplicates, would insert, dead letters")
	rate := inv.fs.Float64("rate", 0, "cap on records read per second (0: none), so the live processors keep up")
	database := inv.fs.String("database", "", "replay into this database instead of CLICKHOUSE_DATABASE (created and migrated first), e.g. to rebuild after a schema change")
	stateDir := inv.fs.String("state-dir", ".run/replay", "folder of the progress files that let an interrupted replay resume")
	dead := inv.fs.Bool("dead-letters", false, "produce undecodable records to the dead-letter topic again (default: only counted)")
	asJSON := inv.fs.Bool("json", false, "print the report as JSON")
	if err := inv.parse(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	live := chcfg.Database
	target := live
	if *database != "" {
		if !chconn.ValidIdent(*database) {
			return fmt.Errorf("--database %q is not a valid database name", *database)
		}
		target = *database
	}
	if *rate < 0 {
		return fmt.Errorf("--rate must not be negative")
	}
	chcfg.MaxOpenConns = 4
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: target, Cluster: chcfg.Cluster}, inv.log); err != nil {
		return fmt.Errorf("migrate %s: %w", target, err)
	}
	rep, err := replay.Run(ctx, replay.Options{
		Kafka: kcfg, ClickHouse: conn, Database: target, LiveDatabase: live, Group: group,
		From: *from, To: *to, DryRun: *dry, Rate: *rate, StateDir: *stateDir, Processor: cfg, DeadLetters: *dead,
		Log: inv.log, Progress: os.Stderr,
	})
	if rep != nil {
		if *asJSON {
			if jerr := writeJSON(inv.stdout, rep); jerr != nil && err == nil {
				err = jerr
			}
		} else {
			printReplay(inv.stdout, rep)
		}
	}
	return err
}

func printReplay(w io.Writer, r *replay.Report) {
	mode := "replayed into"
	verb := "INSERTED"
	if r.DryRun {
		mode, verb = "dry run against", "WOULD INSERT"
	}
	fmt.Fprintf(w, "%s %s from %s, partitions %v..%v (%s)\n", mode, r.Database, r.Topic, r.Start, r.End, r.Took)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ACTION\tRECORDS READ\tALREADY STORED\tDUPLICATES\t%s\tDEAD LETTERS\t\n", verb)
	for _, a := range r.SortedActions() {
		c := r.Actions[a]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", orDash(a), c.Records, c.AlreadyStored, c.Duplicates, c.Inserted, c.DeadLetters)
	}
	c := r.Total
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", c.Records, c.AlreadyStored, c.Duplicates, c.Inserted, c.DeadLetters)
	tw.Flush()
	fmt.Fprintln(w, "(records read and dead letters count records; the other columns count events: an incoming_chat is one record and several events)")
}
