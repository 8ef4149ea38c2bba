// Package ingest is the HTTP front door of the pipeline: it receives LiveChat
// webhooks and makes each authentic one durable before answering 200.
//
// LiveChat retries a webhook only about three times within a minute and
// then drops it for good, so the one promise of this package is that a 200
// means the webhook is safe: either Kafka acknowledged the record (acks=all,
// idempotent producer) or, when Kafka is slow or away, the record was
// fsynced into the local spool (package spool), which drains to Kafka in
// order once the broker is back. Anything that prevents both answers 503,
// so LiveChat retries; 4xx is reserved for requests that can never succeed.
//
// LiveChat authenticates a webhook only by a plain-text secret_key inside
// the body. Ingest verifies it in constant time, then blanks its value in
// place so the stored body is otherwise byte-identical to what LiveChat sent
// and the secret never reaches Kafka, the spool or a log.
//
// Answers of POST /webhooks/livechat; every error has a JSON body
// {"error": "...", "request_id": "..."}:
//
//	200 stored: Kafka acknowledged it, or it is fsynced in the spool
//	400 not one JSON object naming an action and an organization_id or
//	    license_id; a duplicate (or differently cased) envelope field;
//	    a body cut short or unparsable HTTP
//	401 secret_key missing, empty, not a JSON string, or wrong
//	405 not a POST
//	408 headers or body not received in time (HeaderTimeout, BodyTimeout)
//	413 body larger than MaxBodyBytes
//	415 Content-Type not application/json, or any Content-Encoding
//	431 headers larger than 4 KiB
//	503 our side: Kafka and the spool both unable to take it, an
//	    installation lookup failed, too many large bodies being read, an
//	    earlier webhook of the same chat still being stored; LiveChat retries
//
// The flow of one request: observe (middleware.go: request id, trace
// context, outcome counters) → readBody → Server.webhook → parseEnvelope →
// authenticate → buildRecord (record.go) → store (handoff.go: wait for the
// key's turn, then produce, else spool: a chat's webhooks never overtake
// each other, see keyOrder) → 200.
package ingest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/telemetry"
)

// WebhookPath is where LiveChat posts webhooks.
const WebhookPath = "/webhooks/livechat"

// SecretSource gives the per-organization webhook secrets of installed
// organizations. Both lookups answer nil secrets (not an error) for a
// tenant that did not install; an error means the answer is unknown now
// (ingest answers 503 so LiveChat retries).
type SecretSource interface {
	// WebhookSecrets returns the secrets a webhook of the organization may carry.
	WebhookSecrets(ctx context.Context, organizationID string) ([]string, error)
	// LicenseSecrets resolves a license (LiveChat v3.3 webhooks carry
	// license_id instead of organization_id) to the installed organization
	// that holds it and that organization's secrets; "" and nil when no
	// installed organization is known to hold it.
	LicenseSecrets(ctx context.Context, licenseID int64) (organizationID string, secrets []string, err error)
}

// Config of the ingest server.
type Config struct {
	// Addr to listen on (Run). Default ":8080".
	Addr string
	// Kafka: brokers, raw and dead-letter topics (created at start when
	// missing, with the configured partitions and replication).
	Kafka kafka.Config
	// KafkaTimeout is how long a request waits for the broker's ack before
	// the webhook goes to the spool instead. Default 2s.
	KafkaTimeout time.Duration
	// Linger is how long the producer waits to fill a batch. Default 0:
	// every request waits for its own ack, so lingering adds that much
	// latency to each; batches still form while earlier produce requests
	// are in flight (measurements in BENCHMARKS.md).
	Linger time.Duration
	// DrainTimeout bounds one spool-to-Kafka batch. Default 10s.
	DrainTimeout time.Duration
	// Secrets accepted for every organization (LIVECHAT_WEBHOOK_SECRETS).
	// With none and no Installations, every webhook is rejected.
	Secrets []secret.Secret
	// Installations gives per-organization secrets (optional, nil = none).
	// Its error answers 503, never 401.
	Installations SecretSource
	// InstallationsTimeout bounds one Installations lookup. Default 2s.
	InstallationsTimeout time.Duration
	// Spool is the local fallback (Dir default ".run/spool", MaxBytes
	// default 1 GiB).
	Spool spool.Config
	// DeadDir keeps webhooks Kafka refuses for good (e.g. larger than the
	// topic's max.message.bytes), one file per webhook in the spool entry
	// format, for replay after the broker is fixed. Default Spool.Dir/dead.
	DeadDir string
	// MaxBodyBytes is the largest body accepted (413 above). Default 5 MiB.
	// Keep it within the raw topic's max.message.bytes.
	MaxBodyBytes int
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	// Default 10s (LiveChat's own timeout).
	ShutdownTimeout time.Duration

	// Bounds on unauthenticated load (limits.go): ingest must read a body to
	// find its secret, so these bound what any request may hold.
	//
	// MaxConns is the most connections served at once; more are refused
	// (503). Default 4096.
	MaxConns int
	// MaxConnsPerIP caps connections from one address (429 above). Default
	// 0, off: behind a load balancer or proxy every connection comes from
	// its address; set it when ingest faces the internet directly.
	MaxConnsPerIP int
	// HeaderTimeout bounds the wait for a request's headers, from its first
	// byte (or the connection's start). Default 5s.
	HeaderTimeout time.Duration
	// BodyTimeout bounds the wait for a request's body after its headers
	// (408 when exceeded). Default 10s (LiveChat's own timeout).
	BodyTimeout time.Duration
	// IdleTimeout closes a kept-alive connection idle this long. Default 60s.
	IdleTimeout time.Duration
	// BodyMemory bounds the bytes of large request bodies (over 64 KiB)
	// read or handled at once: the announced size is reserved before the
	// body is read, and a request over the budget is refused with 503
	// before its body is read. Bodies are read into buffers that grow with
	// the bytes that arrive, and smaller ones are bounded by MaxConns.
	// Default 256 MiB.
	BodyMemory int64
	// RefusalLogInterval is how often refused requests (401, 4xx, limits)
	// are logged, as one summary line. Default 10s.
	RefusalLogInterval time.Duration
	// Version is written in the ingest-version header. Default "dev".
	Version string
	// Log receives the server's logs. Default: discard.
	Log *slog.Logger
	// Telemetry receives metrics and, when it traces, the webhook's spans
	// (otelfiber's server span, kotel's publish span; the W3C context
	// travels in the record headers). Default: nothing recorded.
	Telemetry *telemetry.Telemetry
	// CanaryInterval, when positive, makes ingest post a freshness canary
	// webhook to its own endpoint this often (canary.go). Default 0: off.
	CanaryInterval time.Duration
	// Routes mounts extra routes on the same app (optional), e.g. /app/...
	Routes func(r fiber.Router)
	// OnAccepted is called after a webhook was made durable (optional). It
	// runs on the request path: keep it fast. organizationID is the one in
	// the record (see wire.HeaderOrganization): "" for a v3.3 body whose
	// license no installation is known to hold.
	OnAccepted func(organizationID, action string, receivedAt time.Time)

	// kafkaOpts are extra client options (tests: hooks that count produce
	// requests).
	kafkaOpts []kgo.Opt
	// beforeProduce, when set, runs before every produce with its bounded
	// context; an error fails the produce (tests: a slow or blocked broker
	// for chosen records).
	beforeProduce func(ctx context.Context, recs []*kgo.Record) error
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Addr:                 ":8080",
		Kafka:                kafka.DefaultConfig(),
		KafkaTimeout:         2 * time.Second,
		DrainTimeout:         10 * time.Second,
		InstallationsTimeout: 2 * time.Second,
		Spool:                spool.DefaultConfig(".run/spool"),
		MaxBodyBytes:         5 << 20,
		ShutdownTimeout:      10 * time.Second,
		MaxConns:             4096,
		HeaderTimeout:        5 * time.Second,
		BodyTimeout:          10 * time.Second,
		IdleTimeout:          60 * time.Second,
		BodyMemory:           256 << 20,
		RefusalLogInterval:   10 * time.Second,
		Version:              "dev",
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	c.Addr = cmp.Or(c.Addr, d.Addr)
	c.KafkaTimeout = cmp.Or(c.KafkaTimeout, d.KafkaTimeout)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, d.DrainTimeout)
	c.InstallationsTimeout = cmp.Or(c.InstallationsTimeout, d.InstallationsTimeout)
	c.Spool.Dir = cmp.Or(c.Spool.Dir, d.Spool.Dir)
	c.DeadDir = cmp.Or(c.DeadDir, filepath.Join(c.Spool.Dir, "dead"))
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, d.MaxBodyBytes)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, d.ShutdownTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, d.MaxConns)
	c.HeaderTimeout = cmp.Or(c.HeaderTimeout, d.HeaderTimeout)
	c.BodyTimeout = cmp.Or(c.BodyTimeout, d.BodyTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, d.IdleTimeout)
	c.BodyMemory = cmp.Or(c.BodyMemory, d.BodyMemory)
	c.RefusalLogInterval = cmp.Or(c.RefusalLogInterval, d.RefusalLogInterval)
	c.Version = cmp.Or(c.Version, d.Version)
	c.Log = cmp.Or(c.Log, slog.New(slog.DiscardHandler))
	c.Spool.Log = cmp.Or(c.Spool.Log, c.Log.With("component", "spool"))
}

// Validate reports every problem of the configuration at once (after
// defaults were applied by New).
func (c Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Spool.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.KafkaTimeout < 0 || c.DrainTimeout < 0 || c.ShutdownTimeout < 0 || c.InstallationsTimeout < 0 {
		errs = append(errs, errors.New("ingest: timeouts must not be negative"))
	}
	if c.KafkaTimeout >= 10*time.Second {
		errs = append(errs, fmt.Errorf("ingest: kafka timeout %s must stay well below LiveChat's 10s (INGEST_KAFKA_TIMEOUT)", c.KafkaTimeout))
	}
	if c.CanaryInterval < 0 || (c.CanaryInterval > 0 && c.CanaryInterval < time.Second) {
		errs = append(errs, fmt.Errorf("ingest: canary interval %s: want 0 (off) or at least 1s (CANARY_INTERVAL)", c.CanaryInterval))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("ingest: max body must not be negative (INGEST_MAX_BODY)"))
	}
	if c.MaxConns < 0 || c.MaxConnsPerIP < 0 {
		errs = append(errs, errors.New("ingest: connection limits must not be negative (INGEST_MAX_CONNS, INGEST_MAX_CONNS_PER_IP)"))
	}
	if c.HeaderTimeout < 0 || c.BodyTimeout < 0 || c.IdleTimeout < 0 || c.RefusalLogInterval < 0 {
		errs = append(errs, errors.New("ingest: header, body, idle timeouts and the refusal log interval must not be negative"))
	}
	if c.BodyMemory > 0 && c.BodyMemory < int64(c.MaxBodyBytes) {
		errs = append(errs, fmt.Errorf("ingest: body memory %d is below the max body %d: the largest webhook could never be read (INGEST_BODY_MEMORY)", c.BodyMemory, c.MaxBodyBytes))
	}
	if c.Spool.MaxRecordBytes > 0 && c.MaxBodyBytes+64<<10 > c.Spool.MaxRecordBytes {
		errs = append(errs, fmt.Errorf("ingest: max body %d does not fit a spool record (%d)", c.MaxBodyBytes, c.Spool.MaxRecordBytes))
	}
	for i, s := range c.Secrets {
		if s == "" {
			errs = append(errs, fmt.Errorf("ingest: secret #%d is empty (LIVECHAT_WEBHOOK_SECRETS)", i+1))
		}
	}
	return errors.Join(errs...)
}

// Counters count what happened to requests since start.
type Counters struct {
	Accepted          int64 `json:"accepted"`
	Spooled           int64 `json:"spooled"`
	Drained           int64 `json:"drained"`
	Unauthorized      int64 `json:"unauthorized"`
	BadRequest        int64 `json:"bad_request"`
	UnsupportedMedia  int64 `json:"unsupported_media_type"`
	TooLarge          int64 `json:"too_large"`
	MethodNotAllowed  int64 `json:"method_not_allowed"`
	Unavailable       int64 `json:"unavailable"`
	KafkaErrors       int64 `json:"kafka_errors"`
	DrainErrors       int64 `json:"drain_errors"`
	InstallationError int64 `json:"installation_errors"`
	Quarantined       int64 `json:"quarantined"`
	// Refused counts every request refused before it was stored or found
	// ours to fail: 4xx, limits, broken connections.
	Refused int64 `json:"refused"`
	// Busy counts requests refused because BodyMemory was in use.
	Busy int64 `json:"busy"`
}

type counters struct {
	accepted, spooled, drained, unauthorized, badRequest, unsupportedMedia, tooLarge,
	methodNotAllowed, unavailable, kafkaErrors, drainErrors, installationErrors, quarantined, busy atomic.Int64
}

// Stats is the server's state: counters and spool depth.
type Stats struct {
	Counters Counters    `json:"counters"`
	Spool    spool.Stats `json:"spool"`
}

// Server is one ingest process. Build with New, run with Run or Serve.
type Server struct {
	cfg      Config
	log      *slog.Logger
	app      *fiber.App
	client   *kgo.Client
	spool    *spool.Spool
	quar     *Quarantine
	secrets  [][32]byte // SHA-256 of the static secrets
	order    *keyOrder
	budget   *bodyBudget
	refusals *refusals
	prop     propagation.TextMapPropagator
	counters counters
	tel      *ingestTel // telemetry.go
	canary   *canary    // nil unless CanaryInterval > 0 (canary.go)

	ridPrefix string
	ridSeq    atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens the spool (recovering a torn tail) and builds
// the Kafka client; it does not contact the broker. Call Run or Serve, or
// Close when the server is not started.
func New(cfg Config) (*Server, error) {
	cfg.fill()
	// The producer's batch cap and the topics ingest creates are sized from
	// Kafka.MaxMessageBytes: it must fit the largest body accepted plus its
	// key and headers, or such webhooks are refused and quarantined.
	cfg.Kafka.MaxMessageBytes = int32(max(int(cfg.Kafka.MaxMessageBytes), min(cfg.MaxBodyBytes+kafka.RecordOverheadBytes, 1<<31-1)))
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, prop: propagation.TraceContext{}}
	for _, sec := range cfg.Secrets {
		s.secrets = append(s.secrets, hashSecret(string(sec)))
	}
	if cfg.CanaryInterval > 0 {
		c, err := newCanary()
		if err != nil {
			return nil, err
		}
		s.canary = c
		s.secrets = append(s.secrets, hashSecret(c.secret))
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.ridPrefix = hex.EncodeToString(b[:]) + "-"

	s.quar = NewQuarantine(cfg.DeadDir)
	if cfg.Spool.ExtraBytes == nil {
		cfg.Spool.ExtraBytes = s.quar.Bytes
	}
	s.order = newKeyOrder()
	s.budget = &bodyBudget{max: cfg.BodyMemory}
	s.refusals = newRefusals(cfg.Log, cfg.RefusalLogInterval)
	// What a previous run left in the spool: count its keys, so a record
	// of those keys never goes to Kafka past them.
	cfg.Spool.Recovered = func(entry []byte) {
		if r, err := decodeSpoolEntry(entry); err == nil {
			s.order.addSpooled(string(r.Key), 1)
		}
	}
	sp, err := spool.Open(cfg.Spool)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	s.spool = sp
	s.tel = newIngestTel(cfg.Telemetry, s)
	// No compression: bodies are small JSON on a LAN; compressing costs
	// CPU on both sides (the broker re-validates compressed batches) and
	// CPU, not bandwidth, is what limits ingest.
	opts := append([]kgo.Opt{kgo.ProducerLinger(cfg.Linger), kgo.ProducerBatchCompression(kgo.NoCompression())}, cfg.kafkaOpts...)
	cl, err := kafka.NewClient(cfg.Kafka, append(opts, s.tel.kafkaOpts()...)...)
	if err != nil {
		s.tel.close()
		sp.Close()
		return nil, fmt.Errorf("ingest: %w", err)
	}
	s.client = cl
	s.app = s.newApp()
	return s, nil
}

// App is the Fiber app (for tests and for mounting more middleware).
func (s *Server) App() *fiber.App { return s.app }

// Stats returns counters and spool depth.
func (s *Server) Stats() Stats {
	c := &s.counters
	return Stats{
		Counters: Counters{
			Accepted: c.accepted.Load(), Spooled: c.spooled.Load(), Drained: c.drained.Load(),
			Unauthorized: c.unauthorized.Load(), BadRequest: c.badRequest.Load(),
			UnsupportedMedia: c.unsupportedMedia.Load(), TooLarge: c.tooLarge.Load(),
			MethodNotAllowed: c.methodNotAllowed.Load(), Unavailable: c.unavailable.Load(),
			KafkaErrors: c.kafkaErrors.Load(), DrainErrors: c.drainErrors.Load(),
			InstallationError: c.installationErrors.Load(), Quarantined: c.quarantined.Load(),
			Refused: s.refusals.total.Load(), Busy: c.busy.Load(),
		},
		Spool: s.spool.Stats(),
	}
}

// Run listens on cfg.Addr and serves until ctx is cancelled, then shuts
// down gracefully (see Serve).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.Close()
		return fmt.Errorf("ingest: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled. It creates the topics (retrying
// in the background while Kafka is away: webhooks are spooled meanwhile)
// and drains the spool. On cancellation it stops accepting connections,
// lets in-flight requests finish (ShutdownTimeout), stops the drain,
// flushes the producer and fsyncs and closes the spool.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); s.refusals.run(bg) }()
	go func() { defer wg.Done(); s.ensureTopics(bg) }()
	go func() {
		defer wg.Done()
		if err := s.spool.Drain(bg, s.deliverSpooled); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("spool drain stopped", "error", err)
		}
	}()

	served := make(chan error, 1)
	go func() { served <- s.app.Listener(ln) }()
	if s.canary != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.canaryLoop(bg, ln.Addr()) }()
	}
	s.log.Info("ingest listening", "addr", ln.Addr().String(), "raw_topic", s.cfg.Kafka.RawTopic,
		"spool_dir", s.cfg.Spool.Dir, "spool_pending", s.spool.Pending(), "version", s.cfg.Version)

	var serveErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down: finishing in-flight requests")
		if err := s.app.ShutdownWithTimeout(s.cfg.ShutdownTimeout); err != nil {
			s.log.Warn("shutdown: in-flight requests did not finish in time", "error", err)
		}
		<-served
	case serveErr = <-served:
		if serveErr != nil {
			serveErr = fmt.Errorf("ingest: serve: %w", serveErr)
		}
	}
	stopBG()
	wg.Wait()
	if err := s.Close(); err != nil && serveErr == nil {
		serveErr = err
	}
	st := s.Stats()
	s.log.Info("ingest stopped", "accepted", st.Counters.Accepted, "spooled", st.Counters.Spooled,
		"spool_pending", st.Spool.Records)
	return serveErr
}

// Close flushes the producer, then fsyncs and closes the spool. Serve calls
// it; call it yourself only for a server that was never served.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.client.Flush(fctx); err != nil {
			s.log.Warn("producer flush incomplete (those records are in the spool too)", "error", err)
		}
		cancel()
		s.client.Close()
		s.tel.close()
		if err := s.spool.Close(); err != nil {
			s.closeErr = fmt.Errorf("ingest: close spool: %w", err)
		}
	})
	return s.closeErr
}

// checkMessageSize warns when the raw topic refuses bodies ingest accepts:
// such webhooks would be answered 200 and then quarantined (DeadDir). A
// just-created topic may be unknown to the broker for a moment: a few
// attempts, then give up (it is only a warning).
func (s *Server) checkMessageSize(ctx context.Context) {
	adm := kadm.NewClient(s.client)
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(jitter(400 * time.Millisecond))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, s.cfg.Kafka.RawTopic)
		if err != nil || len(rcs) == 0 || rcs[0].Err != nil {
			continue
		}
		for _, c := range rcs[0].Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			// Headers and batch framing need room beside the body.
			if n, err := strconv.Atoi(*c.Value); err == nil && n < s.cfg.MaxBodyBytes+16<<10 {
				s.log.Warn("raw topic's max.message.bytes is below INGEST_MAX_BODY: larger webhooks will be quarantined, not stored in Kafka",
					"topic", s.cfg.Kafka.RawTopic, "max_message_bytes", n, "max_body_bytes", s.cfg.MaxBodyBytes)
			}
		}
		return
	}
}

// ensureTopics creates the raw and dead-letter topics, retrying with
// jittered exponential back-off while the broker is unreachable.
func (s *Server) ensureTopics(ctx context.Context) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := kafka.EnsureTopics(cctx, s.client, s.cfg.Kafka, s.log, s.cfg.Kafka.RawTopic, s.cfg.Kafka.DLQTopic)
		if err == nil {
			s.checkMessageSize(cctx)
			cancel()
			return
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("cannot create topics yet; webhooks are spooled meanwhile", "attempt", attempt, "error", err)
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		wait = min(wait*2, 30*time.Second)
	}
}
