// Command lcpipe is the LiveChat analytics pipeline in one binary. Each
// subcommand is one process of the pipeline (ingest, processor) or a tool
// (migrate, ...); in production ingest and processor run as separate
// processes, the single binary keeps deployment simple.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/lcpipe/lcpipe/internal/telemetry"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, inv *invocation) error
}

func commands() []command {
	return []command{
		{"ingest", "receive LiveChat webhooks and make them durable in Kafka", runIngest},
		{"processor", "decode, de-duplicate and insert webhooks into ClickHouse", runProcessor},
		{"migrate", "apply the ClickHouse schema migrations", runMigrate},
		{"dashboards", "serve the built-in dashboards (read-only ClickHouse queries)", runDashboards},
		{"simulate", "generate realistic LiveChat webhook traffic (post to ingest or write files)", runSimulate},
		{"webhooks", webhooksSummary, runWebhooks},
		{"status", statusSummary, runStatus},
		{"dlq", dlqSummary, runDLQ},
		{"quarantine", quarantineSummary, runQuarantine},
		{"group", groupSummary, runGroup},
		{"replay", replaySummary, runReplay},
		{"audit", auditSummary, runAudit},
		{"analysts", analystsSummary, runAnalysts},
		{"retention", retentionSummary, runRetention},
		{"erase", eraseSummary, runErase},
		{"healthcheck", "GET a URL and exit 0 on HTTP 200 (container healthchecks)", runHealthcheck},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	log := newLogger(stderr)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(stdout, version)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		inv := newInvocation(c.name, c.summary, args[1:], stdout, log.With("cmd", c.name))
		err := c.run(ctx, inv)
		switch {
		case err == nil, errors.Is(err, errHelp):
			return 0
		default:
			fmt.Fprintf(stderr, "lcpipe %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "lcpipe: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "lcpipe %s: LiveChat chat-analytics pipeline\n\nUsage: lcpipe <command> [flags]   (lcpipe <command> --help)\n\nCommands:\n", version)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
}

// newLogger builds the process logger: JSON when LOG_FORMAT=json, text
// otherwise; LOG_LEVEL=debug|info|warn|error. Lines logged with a context
// carry its trace id, span id and request id (telemetry.LogHandler).
func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(strings.ToUpper(os.Getenv("LOG_LEVEL"))))
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("LOG_FORMAT") == "json" {
		return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
}
