package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/ops"
	"github.com/lcpipe/lcpipe/processor"
)

const statusSummary = "how far behind the pipeline is: lag per partition, inserts, dead letters, ingest spools, settler (exit 1 over --max-* thresholds)"

// errUnhealthy is returned after the report was printed when a threshold
// was exceeded: the process exits 1 (cron and container checks).
var errUnhealthy = errors.New("unhealthy (see problems above)")

// runStatus prints the pipeline's state (see ops.GetStatus).
func runStatus(ctx context.Context, inv *invocation) error {
	kcfg := inv.Kafka()
	chcfg := inv.ClickHouse()
	group := inv.String("KAFKA_GROUP", processor.DefaultConfig().Group, "consumer group of the processors")
	asJSON := inv.fs.Bool("json", false, "print the report as JSON")
	ingests := inv.fs.String("ingest", "", "admin URLs of ingest processes to ask for spool and quarantine, comma-separated (e.g. http://127.0.0.1:9480)")
	maxLag := inv.fs.Int64("max-lag", 0, "exit 1 when the total lag exceeds this many records (0: not checked)")
	maxLagAge := inv.fs.Duration("max-lag-age", 0, "exit 1 when the oldest unprocessed record is older than this (0: not checked)")
	maxSpool := inv.fs.String("max-spool", "", "exit 1 when an ingest's spool plus quarantine exceeds this size, e.g. 100MiB (empty: not checked)")
	if err := inv.parse(); err != nil {
		return err
	}
	var spoolLimit int64
	if *maxSpool != "" {
		n, err := parseBytes(*maxSpool)
		if err != nil {
			return fmt.Errorf("--max-spool %q: %w", *maxSpool, err)
		}
		spoolLimit = n
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
	st, err := ops.GetStatus(ctx, cl, conn, ops.StatusOptions{
		Group: group, RawTopic: kcfg.RawTopic, DLQTopic: kcfg.DLQTopic, Database: chcfg.Database,
		Ingests: splitList(*ingests), MaxLag: *maxLag, MaxLagAge: *maxLagAge, MaxSpool: spoolLimit,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(inv.stdout, st); err != nil {
			return err
		}
	} else {
		printStatus(inv.stdout, st)
	}
	if len(st.Problems) > 0 {
		return errUnhealthy
	}
	return nil
}

func printStatus(w io.Writer, st *ops.Status) {
	fmt.Fprintf(w, "group %s (%s), %d member(s); topic %s\n", st.Group, orDash(st.GroupState), len(st.Members), st.Topic)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PARTITION\tLOG END\tCOMMITTED\tLAG\tLAG TIME\tOWNER\t")
	for _, p := range st.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\t\n", p.Partition, p.LogEnd, p.Committed, p.Lag, secs(p.LagSeconds), orDash(p.Owner))
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%s\t\t\n", st.TotalLag, secs(st.MaxLagSecs))
	tw.Flush()
	for _, m := range st.Members {
		fmt.Fprintf(w, "member %s@%s partitions %v\n", m.ClientID, m.Host, m.Partitions)
	}
	if st.LastInsert != nil {
		fmt.Fprintf(w, "last insert %s (%s ago), %d events in the last minute\n", st.LastInsert.Format(time.RFC3339), secs(st.LastInsertAgeSec), st.EventsLastMinute)
	} else {
		fmt.Fprintln(w, "last insert: none recorded")
	}
	fmt.Fprintf(w, "dead letters (%s): %d total, %d in the last hour\n", st.DeadLetters.Topic, st.DeadLetters.Total, st.DeadLetters.LastHour)
	for _, is := range st.Ingests {
		if is.Error != "" {
			fmt.Fprintf(w, "ingest %s: ERROR %s\n", is.URL, is.Error)
			continue
		}
		s := is.Status
		fmt.Fprintf(w, "ingest %s: spool %d records, %d bytes in %d segments (oldest %s), quarantine %d files, %d bytes; %d of %d bytes used\n",
			is.URL, s.Spool.Records, s.Spool.Bytes, s.Spool.Segments, secs(s.Spool.OldestAgeSeconds), s.Quarantine.Files, s.Quarantine.Bytes,
			s.Spool.UsedBytes, s.Spool.MaxBytes)
	}
	for _, wm := range st.Watermarks {
		fmt.Fprintf(w, "settler %s: settled up to %s (%d days, last settled %s)\n", wm.Name, wm.Day, wm.Days, wm.SettledAt.Format(time.RFC3339))
	}
	for _, p := range st.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", p)
	}
}

// secs formats a number of seconds as a rounded duration.
func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
