package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

// errHelp is returned by parse when --help was asked for and printed.
var errHelp = errors.New("help printed")

// envVar documents one environment variable a command reads.
type envVar struct{ Name, Default, Help string }

// invocation is one run of a subcommand: its flags, the environment it reads
// (recorded as a spec, so --help lists every variable with its default) and
// the logger. Configuration is read here once, into typed structs; no
// package below cmd/ reads the environment.
type invocation struct {
	name, summary string
	args          []string
	lookup        func(string) (string, bool)
	stdout        io.Writer
	log           *slog.Logger
	fs            *flag.FlagSet
	vars          []envVar
	errs          []error
	maxBody       *int64 // INGEST_MAX_BODY once read (MaxBody)
	// telOpts are exporters injected instead of the configured ones
	// (tests: an in-memory span exporter).
	telOpts telemetry.Options
}

func newInvocation(name, summary string, args []string, stdout io.Writer, log *slog.Logger) *invocation {
	inv := &invocation{name: name, summary: summary, args: args, lookup: os.LookupEnv, stdout: stdout, log: log}
	inv.fs = flag.NewFlagSet(name, flag.ContinueOnError)
	inv.fs.SetOutput(stdout)
	inv.fs.Usage = inv.usage
	return inv
}

func (inv *invocation) usage() {
	w := inv.stdout
	fmt.Fprintf(w, "lcpipe %s: %s\n\nUsage: lcpipe %s [flags]\n", inv.name, inv.summary, inv.name)
	n := 0
	inv.fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		inv.fs.PrintDefaults()
	}
	if len(inv.vars) > 0 {
		fmt.Fprintln(w, "\nEnvironment:")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, v := range inv.vars {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, orDash(v.Default), v.Help)
		}
		tw.Flush()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parse parses the flags; on --help it prints usage and returns errHelp.
// Environment errors are reported after flags, so --help always works.
func (inv *invocation) parse() error {
	if err := inv.fs.Parse(inv.args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%s: %w", inv.name, err)
	}
	if len(inv.errs) > 0 {
		return fmt.Errorf("%s: configuration: %w", inv.name, errors.Join(inv.errs...))
	}
	return nil
}

func (inv *invocation) raw(name, def, help string) (string, bool) {
	inv.vars = append(inv.vars, envVar{name, def, help})
	if v, ok := inv.lookup(name); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), true
	}
	return def, false
}

func (inv *invocation) fail(name, v string, err error) {
	inv.errs = append(inv.errs, fmt.Errorf("%s=%q: %w", name, v, err))
}

// String reads a string variable.
func (inv *invocation) String(name, def, help string) string {
	v, _ := inv.raw(name, def, help)
	return v
}

// List reads a comma-separated variable.
func (inv *invocation) List(name, def, help string) []string {
	v, _ := inv.raw(name, def, help)
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Int reads an integer variable.
func (inv *invocation) Int(name string, def int, help string) int {
	v, set := inv.raw(name, strconv.Itoa(def), help)
	if !set {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		inv.fail(name, v, errors.New("not an integer"))
		return def
	}
	return n
}

// Bool reads a boolean variable (true/false/1/0).
func (inv *invocation) Bool(name string, def bool, help string) bool {
	v, set := inv.raw(name, strconv.FormatBool(def), help)
	if !set {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		inv.fail(name, v, errors.New("not a boolean"))
		return def
	}
	return b
}

// Duration reads a Go duration ("200ms", "2s", "10m").
func (inv *invocation) Duration(name string, def time.Duration, help string) time.Duration {
	v, set := inv.raw(name, def.String(), help)
	if !set {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		inv.fail(name, v, errors.New("not a Go duration such as 200ms or 2s"))
		return def
	}
	return d
}

// Bytes reads a size: a number with an optional KiB/MiB/GiB (or KB/MB/GB) suffix.
func (inv *invocation) Bytes(name string, def int64, help string) int64 {
	v, set := inv.raw(name, formatBytes(def), help)
	if !set {
		return def
	}
	n, err := parseBytes(v)
	if err != nil {
		inv.fail(name, v, err)
		return def
	}
	return n
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("not a size such as 5MiB or 1GiB")
	}
	return n * mult, nil
}

// Kafka reads the shared Kafka variables.
func (inv *invocation) Kafka() kafka.Config {
	c := kafka.DefaultConfig()
	c.Brokers = inv.List("KAFKA_BROKERS", strings.Join(c.Brokers, ","), "Kafka bootstrap brokers, comma-separated")
	inv.kafkaTopics(&c)
	c.Partitions = int32(inv.Int("KAFKA_TOPIC_PARTITIONS", int(c.Partitions), "partitions of topics created at start"))
	c.ReplicationFactor = int16(inv.Int("KAFKA_TOPIC_REPLICATION", int(c.ReplicationFactor), "replication factor of topics created at start"))
	c.MinInsyncReplicas = int16(inv.Int("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", int(max(1, min(2, c.ReplicationFactor))),
		"min.insync.replicas of topics created at start: replicas that must have a webhook before it is acknowledged (default min(2, KAFKA_TOPIC_REPLICATION))"))
	// Every command that touches the topics sizes them and its clients from
	// the largest body ingest accepts, whichever command creates them first.
	c.MaxMessageBytes = int32(min(inv.MaxBody()+kafka.RecordOverheadBytes, 1<<31-1))
	c.ClientID = inv.String("KAFKA_CLIENT_ID", "lcpipe-"+inv.name, "client id shown in broker logs")
	c.TLS = inv.TLS("KAFKA_TLS", "broker", " to the brokers (managed Kafka services require it)")
	c.SASL.Mechanism = inv.String("KAFKA_SASL_MECHANISM", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL; PLAIN sends the password as is: use it with KAFKA_TLS)")
	c.SASL.Username = inv.String("KAFKA_SASL_USERNAME", "", "SASL user (Confluent Cloud: the API key)")
	c.SASL.Password = secret.Secret(inv.String("KAFKA_SASL_PASSWORD", "", "SASL password (Confluent Cloud: the API secret)"))
	if err := c.Validate(); err != nil {
		inv.errs = append(inv.errs, err)
	}
	return c
}

// kafkaTopics reads the topic names and their retention (erase reads only
// these: to say how long Kafka keeps what it removed).
func (inv *invocation) kafkaTopics(c *kafka.Config) {
	c.RawTopic = inv.String("KAFKA_RAW_TOPIC", c.RawTopic, "topic of raw webhook bodies")
	c.DLQTopic = inv.String("KAFKA_DLQ_TOPIC", c.DLQTopic, "dead-letter topic for records that cannot be processed")
	c.RawRetention = inv.Duration("KAFKA_RAW_RETENTION", c.RawRetention,
		"retention.ms of the raw topic when lcpipe creates it (336h = 14 days): webhook bodies, customers' personal data included, stay in Kafka (and replayable) this long, erased ones too; negative keeps them forever. Existing topics are not altered (a warning says so)")
	c.DLQRetention = inv.Duration("KAFKA_DLQ_RETENTION", c.DLQRetention,
		"retention.ms of the dead-letter topic when lcpipe creates it (720h = 30 days); negative keeps them forever")
}

// MaxBody reads INGEST_MAX_BODY (once: Kafka and ingest both use it). Set
// it alike for ingest and processor: topics created at start get
// max.message.bytes from it, and clients are built to carry such records.
func (inv *invocation) MaxBody() int64 {
	if inv.maxBody == nil {
		n := inv.Bytes("INGEST_MAX_BODY", int64(ingest.DefaultConfig().MaxBodyBytes), "largest webhook body accepted (413 above); topics created at start get max.message.bytes of this plus 64KiB (headers) and Kafka clients carry such records: set it alike for ingest and processor")
		inv.maxBody = &n
	}
	return *inv.maxBody
}

// ClickHouse reads the shared ClickHouse variables.
func (inv *invocation) ClickHouse() chconn.Config {
	c := chconn.DefaultConfig()
	c.Addr = inv.List("CLICKHOUSE_ADDR", strings.Join(c.Addr, ","), "ClickHouse native-protocol address(es), host:port")
	c.Database = inv.String("CLICKHOUSE_DATABASE", c.Database, "database of the pipeline's tables")
	c.User = inv.String("CLICKHOUSE_USER", c.User, "ClickHouse user")
	c.Password = secret.Secret(inv.String("CLICKHOUSE_PASSWORD", "", "ClickHouse password"))
	c.Cluster = inv.String("CLICKHOUSE_CLUSTER", "", "cluster name: migrations use ON CLUSTER and Replicated engines")
	c.TLS = inv.TLS("CLICKHOUSE_TLS", "server", ": CLICKHOUSE_ADDR is then the secure native port, usually 9440 (ClickHouse Cloud requires it)")
	if err := c.Validate(); err != nil {
		inv.errs = append(inv.errs, err)
	}
	return c
}

// TLS reads the TLS variables of one connection: prefix (on/off),
// prefix_CA_FILE, prefix_CERT_FILE, prefix_KEY_FILE and
// prefix_SERVER_NAME. peer is "broker" or "server"; note is added to the
// on/off help. The package that dials validates them.
func (inv *invocation) TLS(prefix, peer, note string) tlsconf.Config {
	return tlsconf.Config{
		Enabled:    inv.Bool(prefix, false, "connect with TLS"+note),
		CAFile:     inv.String(prefix+"_CA_FILE", "", "PEM file of the CA(s) trusted to sign the "+peer+" certificate (default: the system's roots)"),
		CertFile:   inv.String(prefix+"_CERT_FILE", "", "PEM client certificate, when the "+peer+" requires one (with "+prefix+"_KEY_FILE)"),
		KeyFile:    inv.String(prefix+"_KEY_FILE", "", "unencrypted PEM private key of "+prefix+"_CERT_FILE"),
		ServerName: inv.String(prefix+"_SERVER_NAME", "", "name the "+peer+" certificate must carry (default: the host dialled)"),
	}
}
