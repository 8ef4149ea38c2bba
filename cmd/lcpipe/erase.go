package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lcpipe/lcpipe/erase"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
)

const eraseSummary = "delete an organization's, customer's or chat's data from ClickHouse: erase --organization ID [--customer ID | --chat ID] [--dry-run] [--json]"

// kafkaRetention says how long the topics keep what erase removed from
// ClickHouse: erase cannot delete single records from Kafka.
type kafkaRetention struct {
	RawTopic     string `json:"raw_topic"`
	RawRetention string `json:"raw_retention"`
	DLQTopic     string `json:"dlq_topic"`
	DLQRetention string `json:"dlq_retention"`
	Note         string `json:"note"`
}

// eraseOutput is what `lcpipe erase --json` prints.
type eraseOutput struct {
	*erase.Report
	Kafka kafkaRetention `json:"kafka"`
}

// runErase deletes a target's rows from every table (package erase).
func runErase(ctx context.Context, inv *invocation) error {
	kcfg := kafka.DefaultConfig()
	inv.kafkaTopics(&kcfg)
	chcfg := inv.ClickHouse()
	var t erase.Target
	inv.fs.StringVar(&t.Organization, "organization", "", "organization ID (required); alone: erase all of its data, e.g. after it uninstalled the app")
	inv.fs.StringVar(&t.Customer, "customer", "", "erase this customer: the chats they took part in, whole, and every row naming them")
	inv.fs.StringVar(&t.Chat, "chat", "", "erase this chat: its rows and those of its threads")
	dry := inv.fs.Bool("dry-run", false, "count what would be deleted, delete nothing")
	asJSON := inv.fs.Bool("json", false, "print the report as JSON")
	if err := inv.parse(); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return err
	}
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := erase.Run(ctx, conn, erase.Options{Database: chcfg.Database, DryRun: *dry, Log: inv.log}, t)
	if rep == nil {
		return err
	}
	out := eraseOutput{Report: rep, Kafka: kafkaNote(kcfg)}
	if *asJSON {
		if jerr := writeJSON(inv.stdout, out); jerr != nil {
			return errors.Join(err, jerr)
		}
	} else {
		printErase(inv.stdout, out)
	}
	return err
}

// kafkaNote reads the topics' configured retention (what lcpipe gives the
// topics it creates; a topic made otherwise has its own, which
// EnsureTopics warns about at start).
func kafkaNote(c kafka.Config) kafkaRetention {
	days := func(ms string) string {
		if ms == "-1" {
			return "forever"
		}
		var n int64
		_, _ = fmt.Sscan(ms, &n)
		d := time.Duration(n) * time.Millisecond
		if d%(24*time.Hour) == 0 {
			return fmt.Sprintf("%d days", d/(24*time.Hour))
		}
		return d.String()
	}
	k := kafkaRetention{RawTopic: c.RawTopic, RawRetention: days(c.RetentionMS(c.RawTopic)), DLQTopic: c.DLQTopic, DLQRetention: days(c.RetentionMS(c.DLQTopic))}
	k.Note = fmt.Sprintf("Kafka keeps the raw webhooks in %s for its retention (%s as configured: KAFKA_RAW_RETENTION) and dead letters in %s (%s: KAFKA_DLQ_RETENTION); "+
		"Kafka cannot delete single records, so they expire with the topic's retention. A replay, group reset or dead-letter redrive of that range "+
		"inserts them again: run this erase again after one.", k.RawTopic, k.RawRetention, k.DLQTopic, k.DLQRetention)
	return k
}

func printErase(w io.Writer, o eraseOutput) {
	r := o.Report
	what := "organization " + r.Target.Organization
	switch r.Target.Scope() {
	case "customer":
		what = fmt.Sprintf("customer %s of organization %s (%d chat(s), %d thread(s))", r.Target.Customer, r.Target.Organization, r.Chats, r.Threads)
	case "chat":
		what = fmt.Sprintf("chat %s of organization %s (%d thread(s))", r.Target.Chat, r.Target.Organization, r.Threads)
	}
	if r.DryRun {
		fmt.Fprintf(w, "dry run: would erase %s from database %s\n", what, r.Database)
	} else {
		fmt.Fprintf(w, "erased %s from database %s in %s\n", what, r.Database, r.Took.Round(time.Millisecond))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tBY\tMATCHED\tDELETED\tREMAINING\tMUTATIONS")
	var deleted uint64
	for _, t := range r.Tables {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\n", t.Table, strings.Join(t.By, ","), t.Matched, t.Deleted(), t.Remaining, t.Mutations)
		deleted += t.Deleted()
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t\n", r.Matched(), deleted, r.Remaining())
	tw.Flush()
	if len(r.Kept) > 0 {
		fmt.Fprintln(w, "\nkept (nothing of the target in them):")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, k := range r.Kept {
			fmt.Fprintf(tw, "  %s\t%s\n", k.Table, k.Reason)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\n"+o.Kafka.Note)
}
