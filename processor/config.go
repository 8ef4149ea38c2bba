package processor

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/telemetry"
)

// Config tunes the processor. Zero values take the defaults documented on
// each field (DefaultConfig).
type Config struct {
	// Group is the Kafka consumer group. Default livechat-processor. A new
	// group starts at the earliest offset.
	Group string
	// BatchRows, BatchBytes and BatchLinger end a batch: whichever comes
	// first. Defaults 50 000 rows, 12 MiB, 1s. Bytes count the rows' memory
	// (struct and strings, about 2 KiB per row), so BATCH_BYTES usually ends
	// a batch first. A batch is the unit of de-duplication (one ID lookup)
	// and one block of an INSERT; 12 MiB balances lookups against memory and
	// GC (BENCHMARKS.md, Processor). The linger only ends a batch while the
	// flusher is idle: under a backlog batches grow to their size limits.
	BatchRows   int
	BatchBytes  int64
	BatchLinger time.Duration
	// DedupWindow is the retry horizon of state changes without a server
	// identity: a change is a retry only when its subjects' last kept
	// change, received less than this before it, left the same state
	// (nothing different in between). Default 2m (LiveChat retries up to 3
	// times within about a minute).
	DedupWindow time.Duration
	// MaxPendingBatches is how many sealed batches (the one being flushed
	// included) may wait for ClickHouse before fetching pauses
	// (PauseFetchTopics). Default 2. Memory is bounded by about
	// (MaxPendingBatches+1) × BatchBytes, plus the insert's column copy of
	// one batch, the caches and the fetch buffers.
	MaxPendingBatches int
	// FetchMaxBytes bounds one fetch response (and so the fetch buffer;
	// decompressed JSON is several times larger). Default 4 MiB; a
	// partition gets at most a quarter of it per fetch. Both are soft
	// bounds: a record larger than them (a webhook up to INGEST_MAX_BODY)
	// is still fetched, as Kafka returns the first batch of a response
	// whole (kafka.NewClient), so they need not grow with it.
	FetchMaxBytes int32
	// IDCacheSize, WindowCacheSize and UserCacheSize bound the in-memory
	// caches (two generations of this many entries each). Defaults 250 000
	// event IDs, 50 000 state-change subjects, 20 000 chats. A miss only costs a
	// ClickHouse lookup (or an ID-shape author type).
	IDCacheSize     int
	WindowCacheSize int
	UserCacheSize   int
	// InsertRows and InsertLinger end an INSERT: consecutive batches stream
	// into one open INSERT, each as a block sent as soon as it is
	// de-duplicated (its rows then leave memory), and the server squashes
	// the blocks into one, because large written blocks cost ClickHouse the
	// least per row (BENCHMARKS.md, Processor). Defaults 100 000 rows and
	// 2s. The INSERT also ends when the input is drained, when a rebalance
	// or shutdown waits for it, and when half of WindowCacheSize state
	// changes are in it (those decisions live only in memory until stored).
	// Offsets are committed when the INSERT completes. InsertRows must not
	// exceed half of IDCacheSize, for the same reason.
	InsertRows   int
	InsertLinger time.Duration
	// ZombieInsertWait is how long a new owner of partitions waits for an
	// INSERT of them that is still running on the server (a crashed or
	// lost owner's) before it kills it. It never reads the partitions
	// while one runs. Default 1m.
	ZombieInsertWait time.Duration
	// DecodeWorkers decode records in parallel. Default 2.
	DecodeWorkers int
	// RetryMin and RetryMax bound the jittered exponential backoff of
	// ClickHouse and dead-letter retries. Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds the final flush on shutdown. Default 30s.
	ShutdownTimeout time.Duration
	// Instance names this process in pipeline_batches. Default host-pid.
	Instance string
	// SessionTimeout is the consumer group session: how long a crashed
	// member keeps its partitions before the group moves them. Default 45s
	// (franz-go's); the broker allows 6s..5m.
	SessionTimeout time.Duration
	// LagInterval is how often the consumer group's lag is sampled from
	// Kafka (lag.go: the lag gauges and pipeline_lag). Default 15s;
	// negative turns it off.
	LagInterval time.Duration

	// Decode decodes a record's body. Default livechat.Decode. (A hook for
	// tests that play an older decoder: `lcpipe dlq redrive` is then shown
	// to store what the real one reads.)
	Decode func(body []byte) (*livechat.Webhook, error)
	// Range, when set, makes Run read a bounded range of the raw topic
	// with its own consumer instead of the consumer group (replays): see
	// Range (rangemode.go).
	Range *Range
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		Group:             "livechat-processor",
		BatchRows:         50_000,
		BatchBytes:        12 << 20,
		BatchLinger:       time.Second,
		DedupWindow:       2 * time.Minute,
		MaxPendingBatches: 2,
		FetchMaxBytes:     4 << 20,
		IDCacheSize:       250_000,
		WindowCacheSize:   50_000,
		UserCacheSize:     20_000,
		DecodeWorkers:     2,
		ZombieInsertWait:  time.Minute,
		InsertRows:        100_000,
		InsertLinger:      2 * time.Second,
		RetryMin:          100 * time.Millisecond,
		RetryMax:          10 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		Instance:          host + "-" + strconv.Itoa(os.Getpid()),
		SessionTimeout:    45 * time.Second,
		LagInterval:       15 * time.Second,
	}
}

// withDefaults fills the zero fields with the defaults documented on Config.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Group = cmp.Or(c.Group, d.Group)
	c.BatchRows = cmp.Or(c.BatchRows, d.BatchRows)
	c.BatchBytes = cmp.Or(c.BatchBytes, d.BatchBytes)
	c.BatchLinger = cmp.Or(c.BatchLinger, d.BatchLinger)
	c.DedupWindow = cmp.Or(c.DedupWindow, d.DedupWindow)
	c.MaxPendingBatches = cmp.Or(c.MaxPendingBatches, d.MaxPendingBatches)
	c.FetchMaxBytes = cmp.Or(c.FetchMaxBytes, d.FetchMaxBytes)
	c.IDCacheSize = cmp.Or(c.IDCacheSize, d.IDCacheSize)
	c.WindowCacheSize = cmp.Or(c.WindowCacheSize, d.WindowCacheSize)
	c.UserCacheSize = cmp.Or(c.UserCacheSize, d.UserCacheSize)
	c.InsertRows = cmp.Or(c.InsertRows, d.InsertRows)
	c.InsertLinger = cmp.Or(c.InsertLinger, d.InsertLinger)
	c.ZombieInsertWait = cmp.Or(c.ZombieInsertWait, d.ZombieInsertWait)
	c.DecodeWorkers = cmp.Or(c.DecodeWorkers, d.DecodeWorkers)
	c.RetryMin = cmp.Or(c.RetryMin, d.RetryMin)
	c.RetryMax = cmp.Or(c.RetryMax, d.RetryMax)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, d.ShutdownTimeout)
	c.Instance = cmp.Or(c.Instance, d.Instance)
	c.SessionTimeout = cmp.Or(c.SessionTimeout, d.SessionTimeout)
	c.LagInterval = cmp.Or(c.LagInterval, d.LagInterval)
	return c
}

// Validate reports every problem at once (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("processor: "+format, args...))
		}
	}
	check(c.BatchRows > 0, "BATCH_ROWS must be > 0, got %d", c.BatchRows)
	check(c.BatchBytes >= 64<<10, "BATCH_BYTES must be >= 64KiB, got %d", c.BatchBytes)
	check(c.BatchLinger > 0, "BATCH_LINGER must be > 0, got %s", c.BatchLinger)
	check(c.DedupWindow >= time.Second, "DEDUP_WINDOW must be >= 1s, got %s", c.DedupWindow)
	check(c.MaxPendingBatches > 0, "max pending batches must be > 0, got %d", c.MaxPendingBatches)
	check(c.FetchMaxBytes >= 1<<20, "fetch max bytes must be >= 1MiB, got %d", c.FetchMaxBytes)
	check(c.IDCacheSize > 0 && c.WindowCacheSize > 0 && c.UserCacheSize > 0, "cache sizes must be > 0")
	check(c.DecodeWorkers > 0, "decode workers must be > 0, got %d", c.DecodeWorkers)
	check(c.InsertRows > 0 && 2*c.InsertRows <= c.IDCacheSize, "INSERT_ROWS must be > 0 and at most half the ID cache (%d), got %d", c.IDCacheSize, c.InsertRows)
	check(c.InsertLinger > 0, "INSERT_LINGER must be > 0, got %s", c.InsertLinger)
	check(c.RetryMin > 0 && c.RetryMax >= c.RetryMin, "retry bounds must satisfy 0 < min <= max, got %s..%s", c.RetryMin, c.RetryMax)
	check(c.ShutdownTimeout > 0, "shutdown timeout must be > 0")
	check(c.SessionTimeout >= 6*time.Second, "session timeout must be >= 6s (the broker's minimum), got %s", c.SessionTimeout)
	return errors.Join(errs...)
}

// Options are what New needs: configuration and the clients' settings.
type Options struct {
	Config Config
	Kafka  kafka.Config
	// ClickHouse is an open connection (chconn.Open) and Database the
	// database holding events and pipeline_batches (migrated).
	ClickHouse driver.Conn
	Database   string
	// Directory names agents and groups; nil means empty names.
	Directory Directory
	Log       *slog.Logger
	// Telemetry receives spans and metrics (telemetry.go); nil records
	// nothing.
	Telemetry *telemetry.Telemetry
}

func (o Options) validate() error {
	var errs []error
	if err := o.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Config.Range != nil {
		if err := o.Config.Range.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.ClickHouse == nil {
		errs = append(errs, errors.New("processor: no ClickHouse connection"))
	}
	if !chconn.ValidIdent(o.Database) {
		errs = append(errs, fmt.Errorf("processor: bad database name %q", o.Database))
	}
	return errors.Join(errs...)
}
